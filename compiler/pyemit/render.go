package pyemit

import "strings"

// node is a Python expression the emitter lays out. Bracketed nodes (calls,
// lists, tuples, dicts) are written on one line when they fit, else with
// their contents on one indented line, else one element per line with a
// trailing comma — the order in which black tries its splits.
type node interface {
	flat() string
}

type atomNode string

func (a atomNode) flat() string { return string(a) }

func atom(s string) node { return atomNode(s) }

// bracket is a call, list, tuple or dict: open + elements + close.
type bracket struct {
	open, close string
	elems       []node
	// oneTuple adds the trailing comma a 1-tuple needs.
	oneTuple bool
}

func (b *bracket) flat() string {
	parts := make([]string, len(b.elems))
	for i, e := range b.elems {
		parts[i] = e.flat()
	}
	s := strings.Join(parts, ", ")
	if b.oneTuple && len(b.elems) == 1 {
		s += ","
	}
	return b.open + s + b.close
}

func call(fn string, args ...node) node { return &bracket{open: fn + "(", close: ")", elems: args} }
func list(items ...node) node           { return &bracket{open: "[", close: "]", elems: items} }
func tuple(items ...node) node          { return &bracket{open: "(", close: ")", elems: items, oneTuple: true} }
func dict(items ...node) node           { return &bracket{open: "{", close: "}", elems: items} }

// pair is "key=value" (keyword argument) or "key: value" (dict entry); an
// empty key is a positional argument.
type pair struct {
	key, sep string
	val      node
}

func (p *pair) flat() string {
	if p.key == "" {
		return p.val.flat()
	}
	return p.key + p.sep + p.val.flat()
}

func arg(key string, val node) node {
	return &pair{key: key, sep: "=", val: val}
}

func kv(key, val node) node { return &pair{key: key.flat(), sep: ": ", val: val} }

// methodNode is recv.name(arg).
type methodNode struct {
	recv node
	name string
	arg  node
}

func (m *methodNode) flat() string { return m.recv.flat() + "." + m.name + "(" + m.arg.flat() + ")" }

func method(recv node, name string, a node) node { return &methodNode{recv, name, a} }

// condNode is "a if c else b".
type condNode struct{ then, c, els node }

func (n *condNode) flat() string {
	return n.then.flat() + " if " + n.c.flat() + " else " + n.els.flat()
}

func cond(then, c, els node) node { return &condNode{then, c, els} }

// assignNode is "name = value".
type assignNode struct {
	name string
	val  node
}

func (a *assignNode) flat() string { return a.name + " = " + a.val.flat() }

func assign(name string, val node) node { return &assignNode{name, val} }

// render lays n out starting at column indent; the result has no trailing
// newline.
func render(n node, indent int) string {
	return layout(n, indent, 0, 0)
}

// layout writes n after prefix columns of text already on the line (the
// line starts at indent) and before suffix columns that follow it.
func layout(n node, indent, prefix, suffix int) string {
	f := n.flat()
	if indent+prefix+len(f)+suffix <= LineLength && !strings.Contains(f, "\n") {
		return f
	}
	pad := strings.Repeat(" ", indent)
	inner := strings.Repeat(" ", indent+4)
	switch n := n.(type) {
	case *assignNode:
		return n.name + " = " + layout(n.val, indent, prefix+len(n.name)+3, suffix)
	case *pair:
		if n.key == "" {
			return layout(n.val, indent, prefix, suffix)
		}
		head := n.key + n.sep
		return head + layout(n.val, indent, prefix+len(head), suffix)
	case *methodNode:
		tail := "." + n.name + "(" + n.arg.flat() + ")"
		return layout(n.recv, indent, prefix, suffix+len(tail)) + tail
	case *condNode:
		return "(\n" + inner + f + "\n" + pad + ")"
	case *bracket:
		if len(n.elems) == 0 {
			return f
		}
		// Contents hugged on one indented line.
		body := (&bracket{elems: n.elems, oneTuple: n.oneTuple}).flat()
		if indent+4+len(body) <= LineLength {
			return n.open + "\n" + inner + body + "\n" + pad + n.close
		}
		var b strings.Builder
		b.WriteString(n.open + "\n")
		for _, e := range n.elems {
			b.WriteString(inner + layout(e, indent+4, 0, 1) + ",\n")
		}
		b.WriteString(pad + n.close)
		return b.String()
	}
	return f
}
