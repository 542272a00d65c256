package shard

import (
	"fmt"
	"strconv"
	"strings"
)

// A pipelineLayout is a parsed Megatron pipeline_model_parallel_layout
// (megatron/core/transformer/pipeline_parallel_layer_layout.py,
// PipelineParallelLayerLayout). Stages are listed in the string in
// virtual-pipeline order: stage s is (pp = s mod PP, vp = s div PP).
type pipelineLayout struct {
	src    string
	stages [][]byte // per stage, its layer characters: E, L, t, m
}

// Layer characters of a pipeline layout string.
const (
	layerEmbedding = 'E'
	layerLoss      = 'L'
	layerDecoder   = 't'
	layerMTP       = 'm'
)

// parsePipelineLayout parses Megatron's layout syntax: commas are
// cosmetic and removed first; "(…)*n" repeats a parenthesised group (no
// nesting), then "x*n" repeats one character; "|" separates stages; the
// layer characters are E (embedding), L (loss), t (decoder layer) and m
// (MTP layer). "Et*3|(tt|)*29,m|L" is 32 stages.
func parsePipelineLayout(s string) (*pipelineLayout, error) {
	expanded, err := expandLayout(strings.ReplaceAll(s, ",", ""))
	if err != nil {
		return nil, fmt.Errorf("pipeline_model_parallel_layout %q: %w", s, err)
	}
	pl := &pipelineLayout{src: s}
	for _, st := range strings.Split(expanded, "|") {
		stage := []byte(st)
		for _, c := range stage {
			switch c {
			case layerEmbedding, layerLoss, layerDecoder, layerMTP:
			default:
				return nil, fmt.Errorf("pipeline_model_parallel_layout %q: invalid layer character %q in stage %q (known: E, L, t, m)", s, c, st)
			}
		}
		pl.stages = append(pl.stages, stage)
	}
	return pl, nil
}

// maxLayoutLen bounds the expanded layout so that "t*999999999" cannot
// exhaust memory.
const maxLayoutLen = 1 << 20

// expandLayout applies Megatron's two substitutions in order:
// `\(([^)]+)\)\*(\d+)` and then `(.)\*(\d+)`, each left to right without
// overlap, like re.sub.
func expandLayout(s string) (string, error) {
	// Pass 1: parenthesised groups.
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '(' {
			if j := strings.IndexByte(s[i+1:], ')'); j > 0 {
				inner := s[i+1 : i+1+j]
				rest := s[i+1+j+1:]
				if !strings.Contains(inner, "(") && strings.HasPrefix(rest, "*") {
					if d := leadingDigits(rest[1:]); d != "" {
						n, err := repeatCount(d, len(inner), b.Len())
						if err != nil {
							return "", err
						}
						b.WriteString(strings.Repeat(inner, n))
						i = i + 1 + j + 1 + 1 + len(d)
						continue
					}
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	s = b.String()
	// Pass 2: single characters.
	b.Reset()
	for i := 0; i < len(s); {
		if i+1 < len(s) && s[i+1] == '*' {
			if d := leadingDigits(s[i+2:]); d != "" {
				n, err := repeatCount(d, 1, b.Len())
				if err != nil {
					return "", err
				}
				b.WriteString(strings.Repeat(s[i:i+1], n))
				i += 2 + len(d)
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	out := b.String()
	if strings.ContainsAny(out, "()*") {
		return "", fmt.Errorf("cannot expand %q (nested or unbalanced parentheses, or a '*' without a count)", out)
	}
	return out, nil
}

func repeatCount(digits string, unit, have int) (int, error) {
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n > maxLayoutLen || have+n*unit > maxLayoutLen {
		return 0, fmt.Errorf("repetition *%s makes the layout longer than %d layers", digits, maxLayoutLen)
	}
	return n, nil
}

// count returns how many layers of kind c stage s holds.
func (pl *pipelineLayout) count(s int, c byte) int {
	n := 0
	for _, x := range pl.stages[s] {
		if x == c {
			n++
		}
	}
	return n
}

// validate applies Megatron's validate_layer_layout checks that matter to
// a converter: E first and once, L last and once, as many t as
// num_layers, as many m as mtp_num_layers, MTP after every decoder layer
// and all MTP layers in one stage, the last virtual stage of its PP rank.
func (pl *pipelineLayout) validate(numLayers, mtpLayers, pp int) error {
	var flat []byte
	for _, st := range pl.stages {
		flat = append(flat, st...)
	}
	where := fmt.Sprintf("pipeline_model_parallel_layout %q", pl.src)
	if len(flat) == 0 || flat[0] != layerEmbedding {
		return fmt.Errorf("%s: the first layer must be the embedding E", where)
	}
	if flat[len(flat)-1] != layerLoss {
		return fmt.Errorf("%s: the last layer must be the loss L", where)
	}
	count := func(c byte) int {
		n := 0
		for _, x := range flat {
			if x == c {
				n++
			}
		}
		return n
	}
	if n := count(layerEmbedding); n != 1 {
		return fmt.Errorf("%s: the embedding E appears %d times, want once", where, n)
	}
	if n := count(layerLoss); n != 1 {
		return fmt.Errorf("%s: the loss L appears %d times, want once", where, n)
	}
	if n := count(layerDecoder); n != numLayers {
		return fmt.Errorf("%s has %d decoder layers (t), but num_layers is %d", where, n, numLayers)
	}
	if n := count(layerMTP); n != mtpLayers {
		return fmt.Errorf("%s has %d MTP layers (m), but mtp_num_layers is %d", where, n, mtpLayers)
	}
	if i := strings.IndexByte(string(flat), layerMTP); i >= 0 && strings.IndexByte(string(flat[i:]), layerDecoder) >= 0 {
		return fmt.Errorf("%s: decoder layers must come before MTP layers", where)
	}
	vpp := len(pl.stages) / pp
	for s, st := range pl.stages {
		if strings.IndexByte(string(st), layerMTP) < 0 {
			continue
		}
		p, v := s%pp, s/pp
		if v != vpp-1 {
			return fmt.Errorf("%s: MTP layers must be in the last virtual stage of a pipeline rank (stage %d is pp %d, vp %d)", where, s, p, v)
		}
		if pl.count(s, layerMTP) != mtpLayers {
			return fmt.Errorf("%s: all MTP layers must be in one stage", where)
		}
	}
	return nil
}
