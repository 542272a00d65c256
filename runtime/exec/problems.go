package exec

import (
	"fmt"
	"strconv"
	"strings"
)

// This file holds the problems a plan reports: their kinds, severities
// and the error listing them (report.go prints and caps them).

// Severity of a [Problem].
type Severity uint8

// The severities. Errors stop a conversion; warnings are reported only.
const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// ProblemKind classifies a [Problem].
type ProblemKind string

// The problem kinds.
const (
	// A tensor whose pure name matches no op and is not ignored.
	ProblemUnmatched ProblemKind = "unmatched"
	// A name with a malformed layer or expert index.
	ProblemBadName ProblemKind = "bad-name"
	// An op group with some but not all of its source tensors.
	ProblemIncomplete ProblemKind = "incomplete"
	// Tensors an op claimed (by ROLL's prefix rule) but did not use;
	// ROLL loses them silently.
	ProblemUnconsumed ProblemKind = "unconsumed"
	// An op had enough tensors but not the ones it declares.
	ProblemGather ProblemKind = "gather"
	// Shapes that disagree with the op, the config or the other layers.
	ProblemShape ProblemKind = "shape"
	// An output name no parallel class covers.
	ProblemUnclassified ProblemKind = "unclassified"
	// Two op groups produce the same name.
	ProblemDuplicate ProblemKind = "duplicate"
	// Decoder layers missing or beyond num_layers (an error unless the
	// template drops or ignores all of a layer beyond).
	ProblemLayers ProblemKind = "layers"
	// Experts missing or beyond num_moe_experts.
	ProblemExperts ProblemKind = "experts"
	// A config value the conversion needs is missing or inconsistent.
	ProblemConfig ProblemKind = "config"
	// A parallel layout that does not fit the model.
	ProblemLayout ProblemKind = "layout"
	// A tensor the template and the config say the model has, and the
	// checkpoint lacks (structure.go).
	ProblemMissing ProblemKind = "missing"
	// A weight or bias of an integer or bool dtype.
	ProblemDType ProblemKind = "dtype"
)

// Problem is one thing wrong with a checkpoint (or a template for it),
// found by the planner before any data is read.
type Problem struct {
	Kind     ProblemKind `json:"kind"`
	Severity Severity    `json:"-"`
	// Tensors are the source tensors concerned, with the file each is in.
	Tensors []ProblemTensor `json:"tensors,omitempty"`
	// Op describes the template op concerned, with its source position.
	Op  string `json:"op,omitempty"`
	Msg string `json:"message"`
}

// ProblemTensor names a tensor and its file.
type ProblemTensor struct {
	Name string `json:"name"`
	File string `json:"file,omitempty"`
}

// Error formats the problem on one line.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Msg)
	if p.Op != "" {
		b.WriteString(" [" + p.Op + "]")
	}
	if len(p.Tensors) > 0 {
		b.WriteString(": ")
		for i, t := range p.Tensors {
			if i == MaxProblemTensors {
				fmt.Fprintf(&b, " and %d more", len(p.Tensors)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(t.String())
		}
	}
	return b.String()
}

func (t ProblemTensor) String() string {
	if t.File == "" {
		return strconv.Quote(t.Name)
	}
	return strconv.Quote(t.Name) + " in " + t.File
}

// PlanError lists the error problems of a plan.
type PlanError struct {
	Problems []Problem
}

// Error lists the problems, at most [MaxProblemsPerKind] of each kind
// with a count of the others.
func (e *PlanError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("1 problem: ")
		b.WriteString(e.Problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	kept, omitted := CapProblems(e.Problems)
	for _, p := range kept {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	for _, o := range omitted {
		fmt.Fprintf(&b, "\n  ... and %d more [%s]", o.Count, o.Kind)
	}
	return b.String()
}
