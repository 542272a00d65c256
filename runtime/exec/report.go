package exec

import (
	"fmt"
	"io"

	"github.com/rolltpl/rolltpl/runtime/blockio"
	"github.com/rolltpl/rolltpl/runtime/ops"
)

// OpStat aggregates the steps of one op kind.
type OpStat struct {
	Kind     string `json:"kind"`
	Groups   int    `json:"groups"`
	Inputs   int    `json:"tensors"`
	InBytes  int64  `json:"bytes"`
	Outputs  int    `json:"outputs"`
	OutBytes int64  `json:"output_bytes"`
}

// OpStats returns per-kind totals, kinds in order of first use.
func (p *Plan) OpStats() []OpStat {
	var stats []OpStat
	at := map[string]int{}
	for _, st := range p.Steps {
		i, ok := at[st.Kind]
		if !ok {
			i = len(stats)
			at[st.Kind] = i
			stats = append(stats, OpStat{Kind: st.Kind})
		}
		s := &stats[i]
		s.Groups++
		s.Inputs += len(st.Inputs)
		for _, in := range st.Inputs {
			s.InBytes += p.Inputs[in].Size
		}
		s.Outputs += len(st.Outputs)
		for _, o := range st.Outputs {
			s.OutBytes += o.Size
		}
	}
	return stats
}

// Report is a plan summary for printing or JSON. Problems holds at most
// [MaxProblemsPerKind] problems of each kind (each with at most
// [MaxProblemTensors] tensors); Omitted counts the others by kind, and
// Errors and Warnings count them all.
type Report struct {
	Template  string   `json:"template"`
	Direction string   `json:"direction"`
	Tensors   int      `json:"tensors"`
	Bytes     int64    `json:"bytes"`
	Outputs   int      `json:"outputs"`
	OutBytes  int64    `json:"output_bytes"`
	Ops       []OpStat `json:"ops"`
	Ignored   []string `json:"ignored,omitempty"`
	// SkippedMTP counts the MTP weights left out (--no-mtp) and their
	// bytes.
	SkippedMTP      int             `json:"skipped_mtp,omitempty"`
	SkippedMTPBytes int64           `json:"skipped_mtp_bytes,omitempty"`
	Errors          int             `json:"errors"`
	Warnings        int             `json:"warnings"`
	Problems        []ReportProblem `json:"problems"`
	Omitted         []KindCount     `json:"omitted,omitempty"`
	FP8             *FP8Info        `json:"fp8,omitempty"`
	// Lossy are the op kinds lossy by nature in their tensors' dtype.
	Lossy []LossyOp `json:"lossy,omitempty"`
}

// ReportProblem is a problem with its severity spelled out. MoreTensors
// counts the tensors left out of Tensors.
type ReportProblem struct {
	Severity string `json:"severity"`
	Problem
	MoreTensors int `json:"more_tensors,omitempty"`
}

// KindCount is a number of problems of one kind left out of a list.
type KindCount struct {
	Kind  ProblemKind `json:"kind"`
	Count int         `json:"count"`
}

// Limits of problem lists: a checkpoint of 200 000 unmatched names must
// not print 200 000 paragraphs.
const (
	// MaxProblemsPerKind is how many problems of one kind are listed.
	MaxProblemsPerKind = 20
	// MaxProblemTensors is how many tensors of one problem are listed.
	MaxProblemTensors = 12
)

// CapProblems returns the first [MaxProblemsPerKind] problems of each
// kind, in their order, and the number left out of each kind, kinds in
// order of first occurrence.
func CapProblems(problems []Problem) (kept []Problem, omitted []KindCount) {
	n := map[ProblemKind]int{}
	at := map[ProblemKind]int{}
	for _, pr := range problems {
		n[pr.Kind]++
		if n[pr.Kind] <= MaxProblemsPerKind {
			kept = append(kept, pr)
			continue
		}
		i, ok := at[pr.Kind]
		if !ok {
			i = len(omitted)
			at[pr.Kind] = i
			omitted = append(omitted, KindCount{Kind: pr.Kind})
		}
		omitted[i].Count++
	}
	return kept, omitted
}

// Report summarises the plan.
func (p *Plan) Report() Report {
	r := Report{
		Template:  p.Model.Template.Name,
		Direction: p.Dir.String(),
		Tensors:   len(p.Inputs),
		Bytes:     p.InBytes(),
		Outputs:   p.NumOutputs(),
		OutBytes:  p.OutBytes(),
		Ops:       p.OpStats(),
		Problems:  []ReportProblem{},
		FP8:       p.FP8,
		Lossy:     p.LossyOps(),
	}
	for _, i := range p.Ignored {
		r.Ignored = append(r.Ignored, p.Inputs[i].Name)
	}
	for _, i := range p.SkippedMTP {
		r.SkippedMTP++
		r.SkippedMTPBytes += p.Inputs[i].Size
	}
	for _, pr := range p.Problems {
		if pr.Severity == Error {
			r.Errors++
		} else {
			r.Warnings++
		}
	}
	kept, omitted := CapProblems(p.Problems)
	r.Omitted = omitted
	for _, pr := range kept {
		rp := ReportProblem{Severity: pr.Severity.String(), Problem: pr}
		if len(pr.Tensors) > MaxProblemTensors {
			rp.MoreTensors = len(pr.Tensors) - MaxProblemTensors
			rp.Tensors = pr.Tensors[:MaxProblemTensors]
		}
		r.Problems = append(r.Problems, rp)
	}
	return r
}

// WriteSummary prints the plan as text: totals, a line per op kind, and
// the problems with their tensors (capped as [WriteProblems] does).
func (p *Plan) WriteSummary(w io.Writer) {
	r := p.Report()
	dir := "HF -> MCA"
	if p.Dir == ops.MCAToHF {
		dir = "MCA -> HF"
	}
	fmt.Fprintf(w, "%s %s: %d tensors (%s) -> %d tensors (%s)\n", r.Template, dir, r.Tensors, HumanBytes(r.Bytes), r.Outputs, HumanBytes(r.OutBytes))
	if p.FP8 != nil && p.FP8.Weights > 0 {
		fmt.Fprintln(w, "  "+p.FP8.Summary())
	}
	fmt.Fprintf(w, "  %-22s %7s %8s %12s\n", "op", "groups", "tensors", "bytes")
	for _, s := range r.Ops {
		fmt.Fprintf(w, "  %-22s %7d %8d %12s\n", s.Kind, s.Groups, s.Inputs, HumanBytes(s.InBytes))
	}
	if len(r.Ignored) > 0 {
		var b int64
		for _, i := range p.Ignored {
			b += p.Inputs[i].Size
		}
		fmt.Fprintf(w, "  %-22s %7s %8d %12s\n", "(ignored)", "", len(r.Ignored), HumanBytes(b))
	}
	if r.SkippedMTP > 0 {
		fmt.Fprintf(w, "  %-22s %7s %8d %12s\n", "(MTP left out)", "", r.SkippedMTP, HumanBytes(r.SkippedMTPBytes))
	}
	writeLossy(w, r.Lossy)
	switch {
	case len(r.Problems) == 0:
		fmt.Fprintln(w, "no problems")
		return
	default:
		fmt.Fprintf(w, "%s, %s:\n", plural(r.Errors, "error"), plural(r.Warnings, "warning"))
	}
	WriteProblems(w, p.Problems)
}

// WriteProblems prints problems, one per paragraph: severity, kind and
// message, the op, and the tensors with their files. At most
// [MaxProblemsPerKind] problems of each kind and [MaxProblemTensors]
// tensors of each problem are listed; a last line per kind counts the
// problems left out.
func WriteProblems(w io.Writer, problems []Problem) {
	kept, omitted := CapProblems(problems)
	for _, pr := range kept {
		fmt.Fprintf(w, "%s [%s]: %s", pr.Severity, pr.Kind, pr.Msg)
		if pr.Op != "" {
			fmt.Fprintf(w, "\n    op: %s", pr.Op)
		}
		for i, t := range pr.Tensors {
			if i == MaxProblemTensors {
				fmt.Fprintf(w, "\n    ... and %d more", len(pr.Tensors)-MaxProblemTensors)
				break
			}
			fmt.Fprintf(w, "\n    %s", t)
		}
		fmt.Fprintln(w)
	}
	for _, o := range omitted {
		what := "problems"
		if o.Count == 1 {
			what = "problem"
		}
		fmt.Fprintf(w, "... and %d more [%s] %s (%d listed)\n", o.Count, o.Kind, what, MaxProblemsPerKind)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// HumanBytes formats a byte count with a binary unit.
func HumanBytes(n int64) string { return blockio.HumanBytes(n) }

// LayoutProblems checks that the parallel layout l fits the model described
// by mc ([shard.Layout.DivisibilityProblems], the one owner of these
// rules): the model facts come from mc, the parallel sizes from l.
func LayoutProblems(mc *MCAConfig, l Layout) []Problem {
	m := mc.Layout()
	m.TP, m.PP, m.VPP, m.EP, m.ETP = l.TP, l.PP, l.VPP, l.EP, l.ETP
	m.AccountForEmbedding, m.AccountForLoss = l.AccountForEmbedding, l.AccountForLoss
	var out []Problem
	for _, msg := range m.DivisibilityProblems(mc.Int) {
		out = append(out, Problem{Kind: ProblemLayout, Severity: Error, Msg: msg})
	}
	return out
}
