package ops

import "fmt"

// LoRA rules (lora-fp8.md §1.5.2).
//
// A LoRA pair on an MCA weight W [O, I] is A [ρ, I] and B [O, ρ], with
// delta s·B·A. Every op that rule-bearing kinds apply is a row operation:
// it permutes or partitions the output rows of W, identically for any
// number of columns. For such an op f, f(B·A) = f_ρ(B)·A, where f_ρ is f
// run with the column count (the op's hidden size) set to ρ. Hence the
// rule: B goes through the base op with HiddenSize := ρ, and A is copied to
// every HF output (a rename when the op has one HF name). The inverse (HF
// → MCA) is the op's inverse on B, and A must be the same on every HF name
// (the copy op's HF → MCA keeps the first, the caller checks equality).
//
// Kinds without a rule (copy, concat, drop, qkv_bias, the norms and
// convolutions, the expert splits (phase 2), a stack along dim ≠ 0) make
// LoRA return an error: a LoRA tensor whose base op is one of them is
// underivable.

// A LoRAPair is the pair of ops a LoRA adapter's A and B tensors go
// through for one base op.
type LoRAPair struct {
	A, B Op
}

// loraRules holds the rule of each kind that has one.
var loraRules = map[string]func(op Op, nhf int, rank int64) (LoRAPair, error){
	KindRename:     loraRowOp,
	KindStack:      loraStack,
	KindQKV:        loraRowOp,
	KindGatedQKV:   loraRowOp,
	KindQwen3_5GDN: loraRowOp,
	KindNextGDN:    loraRowOp,
}

// HasLoRARule reports whether kind has a LoRA rule.
func HasLoRARule(kind string) bool { _, ok := loraRules[kind]; return ok }

// LoRA returns the ops of the A and B tensors of a LoRA adapter on the
// weight op converts, with nhf HF names and one MCA name, at LoRA rank
// rank (ρ, the rows of A). It fails for a kind without a rule.
func LoRA(op Op, nhf int, rank int64) (LoRAPair, error) {
	rule, ok := loraRules[op.Kind]
	if !ok {
		return LoRAPair{}, fmt.Errorf("op kind %s has no LoRA rule (it is not a row operation on its weight)", op.Kind)
	}
	if nhf < 1 {
		return LoRAPair{}, fmt.Errorf("op kind %s: a LoRA rule needs at least one HF name, got %d", op.Kind, nhf)
	}
	if rank <= 0 {
		return LoRAPair{}, fmt.Errorf("op kind %s: LoRA rank must be positive, got %d", op.Kind, rank)
	}
	return rule(op, nhf, rank)
}

// loraA is the op of A: a rename for one HF name, else a copy of the one
// MCA A to every HF name.
func loraA(nhf int) Op {
	if nhf == 1 {
		return Op{Kind: KindRename}
	}
	return Op{Kind: KindCopy, NumHF: nhf, NumMCA: 1}
}

// loraRowOp is the rule of ops whose only column-dependent parameter is
// the hidden size: B goes through the op with HiddenSize := rank.
func loraRowOp(op Op, nhf int, rank int64) (LoRAPair, error) {
	b := op
	b.HiddenSize = rank
	return LoRAPair{A: loraA(nhf), B: b}, nil
}

// loraStack is the rule of stack: along dim 0 it is a row op; along
// another dim the columns would follow the op (A, not B), which ROLL gets
// wrong and no template uses, so it has no rule.
func loraStack(op Op, nhf int, rank int64) (LoRAPair, error) {
	if op.Dim != 0 {
		return LoRAPair{}, fmt.Errorf("op kind stack(dim = %d) has no LoRA rule (only dim = 0 stacks rows)", op.Dim)
	}
	return LoRAPair{A: loraA(nhf), B: op}, nil
}
