package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth is the nesting limit of encoding/json's scanner
// (maxNestingDepth): a document with more than this many open objects and
// arrays at once is a syntax error there, and so here.
const maxJSONDepth = 10000

// errSyntax is the decoder's error for a byte that is not valid JSON where
// it stands. Callers never show it: on any decoding error they ask
// [checkJSON] for the document's first syntax error, whose message and
// offset (encoding/json's) win over every other error, exactly as when
// the whole document was checked before it was decoded.
var errSyntax = errors.New("invalid JSON")

// decoder is a single-pass JSON decoder over a complete document in
// memory, for the two shapes of document this package reads: the
// safetensors header and the index. It validates the full JSON grammar as
// encoding/json does (including its nesting limit), decodes strings as
// encoding/json does (escapes, surrogate pairs, lone surrogates as U+FFFD)
// and hands out keys and unescaped strings as views of the document where
// it can. Its input must be valid UTF-8 (callers check this first).
//
// Decoding stops at the first error. A semantic error (a value of the
// wrong kind, a duplicate key) may precede a syntax error later in the
// document; callers therefore report a syntax error found by checkJSON
// first, so the error for any input is the one a validate-then-decode
// parser gives.
type decoder struct {
	b     []byte
	i     int // next byte
	depth int // open objects and arrays
	// view is where the last string returned by str lies in b, when the
	// result is a view of b ([0, 0) otherwise).
	viewStart, viewEnd int
}

// peek returns the byte at d.i, or 0 at the end of the document.
func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// ws skips JSON white space.
func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// kind names the kind of the value at d.i for an error message, as
// [jsonKind] does.
func (d *decoder) kind() string { return jsonKind(d.b[d.i:]) }

// isNumber reports whether the value at d.i is a number (for valid JSON,
// where jsonKind says "number").
func (d *decoder) isNumber() bool {
	c := d.peek()
	return c == '-' || '0' <= c && c <= '9'
}

// end checks that only white space follows the top-level value.
func (d *decoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return errSyntax
	}
	return nil
}

// open enters the object or array whose opening byte is at d.i and
// reports whether it has a first member or element (white space skipped
// up to it); an empty one is consumed whole.
func (d *decoder) open(closing byte) (more bool, err error) {
	d.depth++
	if d.depth > maxJSONDepth {
		return false, errSyntax
	}
	d.i++
	return d.more(closing, false)
}

// more consumes what follows a member or element (first: what follows
// the opening byte) up to the next one, and reports whether there is one:
// a ',' (none when first), or the closing byte, which leaves the
// container.
func (d *decoder) more(closing byte, comma bool) (bool, error) {
	d.ws()
	switch c := d.peek(); {
	case c == closing:
		d.i++
		d.depth--
		return false, nil
	case !comma:
		return true, nil
	case c == ',':
		d.i++
		d.ws()
		return true, nil
	}
	return false, errSyntax
}

// object decodes the object at d.i (white space skipped), calling fn for
// each member in document order with d positioned at the member's value
// (white space skipped); fn must consume the value. The key is valid for
// the rest of the decoding and must not be modified. If the value at d.i
// is not an object, object returns a plain error "is <kind>, want an
// object" for the caller to wrap.
func (d *decoder) object(fn func(key []byte) error) error {
	if d.peek() != '{' {
		return fmt.Errorf("is %s, want an object", article(d.kind()))
	}
	more, err := d.open('}')
	for more && err == nil {
		var key []byte
		if d.peek() != '"' {
			return errSyntax
		}
		if key, err = d.str(); err != nil {
			return err
		}
		d.ws()
		if d.peek() != ':' {
			return errSyntax
		}
		d.i++
		d.ws()
		if err = fn(key); err != nil {
			return err
		}
		more, err = d.more('}', true)
	}
	return err
}

// array decodes the array at d.i, which the caller has seen starts with
// '[', calling fn for each element with d positioned at it (white space
// skipped); fn must consume the element.
func (d *decoder) array(fn func(i int) error) error {
	more, err := d.open(']')
	for i := 0; more && err == nil; i++ {
		if err = fn(i); err != nil {
			return err
		}
		more, err = d.more(']', true)
	}
	return err
}

// skip consumes the value at d.i, whatever it is, checking its syntax.
func (d *decoder) skip() error {
	switch c := d.peek(); c {
	case '{':
		return d.object(func([]byte) error { return d.skip() })
	case '[':
		return d.array(func(int) error { return d.skip() })
	case '"':
		_, err := d.str()
		return err
	case 't':
		_, err := d.literal("true")
		return err
	case 'f':
		_, err := d.literal("false")
		return err
	case 'n':
		_, err := d.literal("null")
		return err
	}
	_, err := d.number()
	return err
}

// literal consumes the literal word (true, false or null) at d.i and
// returns its bytes.
func (d *decoder) literal(word string) ([]byte, error) {
	if !bytes.HasPrefix(d.b[d.i:], []byte(word)) {
		return nil, errSyntax
	}
	d.i += len(word)
	return d.b[d.i-len(word) : d.i], nil
}

// number consumes the number at d.i and returns its text.
func (d *decoder) number() ([]byte, error) {
	start := d.i
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return nil, errSyntax
	}
	if d.peek() == '.' {
		d.i++
		if !d.digits() {
			return nil, errSyntax
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		if !d.digits() {
			return nil, errSyntax
		}
	}
	return d.b[start:d.i], nil
}

// digits consumes a run of decimal digits and reports whether there was
// at least one.
func (d *decoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// str consumes the string at d.i (which starts with '"') and returns its
// value: a view of the document when the string has no escapes, else a
// new slice.
func (d *decoder) str() ([]byte, error) {
	d.i++
	start := d.i
	d.viewStart, d.viewEnd = 0, 0
	// Eight bytes at a time while none of them is special, then byte by
	// byte.
	for d.i+8 <= len(d.b) && !hasSpecial(binary.LittleEndian.Uint64(d.b[d.i:])) {
		d.i += 8
	}
	for d.i < len(d.b) && !strSpecial[d.b[d.i]] {
		d.i++
	}
	switch c := d.peek(); {
	case d.i == len(d.b) || c < ' ':
		return nil, errSyntax
	case c == '\\':
		return d.strEscaped(start)
	}
	d.i++ // the closing quote
	d.viewStart, d.viewEnd = start, d.i-1
	return d.b[start : d.i-1], nil
}

// hasSpecial reports whether one of the eight bytes of x is a quote, a
// backslash or a control character (the bit tricks of "Determine if a
// word has a byte less than n" and "has a zero byte", Bit Twiddling Hacks).
func hasSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	less := (x - ones*' ') &^ x // high bit set where a byte is < 0x20 (or >= 0x80: filtered below)
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	zero := ((q - ones) &^ q) | ((bs - ones) &^ bs)
	return (less|zero)&highs != 0
}

// strSpecial marks the bytes that end the plain run of a string: the
// quote, the backslash and the control characters.
var strSpecial = func() (t [256]bool) {
	for c := range ' ' {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// strEscaped finishes str for a string that started at start and has an
// escape at d.i, decoding it as encoding/json does: a \u escape of a
// surrogate is combined with a following \u escape of the other half into
// one character, and replaced by U+FFFD when there is no such half.
func (d *decoder) strEscaped(start int) ([]byte, error) {
	out := make([]byte, d.i-start, d.i-start+16)
	copy(out, d.b[start:d.i])
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return out, nil
		case c < ' ':
			return nil, errSyntax
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return nil, errSyntax
		}
		switch e := d.b[d.i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := getu4(d.b[d.i:])
			if r < 0 {
				return nil, errSyntax
			}
			d.i += 6
			if utf16.IsSurrogate(r) {
				if dec := utf16.DecodeRune(r, getu4(d.b[d.i:])); dec != unicode.ReplacementChar {
					r = dec
					d.i += 6
				} else {
					r = unicode.ReplacementChar
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, errSyntax
		}
		d.i += 2
	}
	return nil, errSyntax
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// ints decodes the array of non-negative integers at d.i, appending the
// values to *arena and returning them as a sub-slice of it whose capacity
// ends at its length (so appending to it never touches the arena). Its
// plain errors ("is a string, want an array of integers", "element 1 is
// -3, want ...") are for the caller to wrap.
func (d *decoder) ints(arena *[]int64) ([]int64, error) {
	if d.peek() != '[' {
		return nil, fmt.Errorf("is %s, want an array of integers", article(d.kind()))
	}
	start := len(*arena)
	err := d.array(func(i int) error {
		var tok []byte
		var err error
		switch d.peek() {
		case '{', '[', '"':
			return fmt.Errorf("element %d is %s, want a non-negative integer below 2^63", i, article(d.kind()))
		case 't':
			tok, err = d.literal("true")
		case 'f':
			tok, err = d.literal("false")
		case 'n':
			tok, err = d.literal("null")
		default:
			tok, err = d.number()
			if n, ok := nonNegInt(tok); ok && err == nil {
				*arena = append(*arena, n)
				return nil
			}
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("element %d is %s, want a non-negative integer below 2^63", i, describe(tok))
	})
	if err != nil {
		return nil, err
	}
	a := *arena
	return a[start:len(a):len(a)], nil
}

// nonNegInt parses the JSON number tok as strconv.ParseInt(tok, 10, 64)
// does and reports whether that succeeds with a non-negative value ("-0"
// is 0; fractions, exponents and values of 2^63 and more fail).
func nonNegInt(tok []byte) (int64, bool) {
	if string(tok) == "-0" {
		return 0, true
	}
	if len(tok) == 0 || len(tok) > 19 {
		return 0, false
	}
	var n uint64 // 19 digits fit
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

// keySet finds repeated keys of one object: a short list for the few keys
// of a tensor entry, a map once there are more.
type keySet struct {
	few  [8][]byte
	n    int
	many map[string]struct{}
}

// add adds k, which must stay valid and unmodified while the set is used,
// and reports whether it was already there.
func (s *keySet) add(k []byte) (dup bool) {
	if s.many == nil {
		for _, f := range s.few[:s.n] {
			if bytes.Equal(f, k) {
				return true
			}
		}
		if s.n < len(s.few) {
			s.few[s.n] = k
			s.n++
			return false
		}
		s.many = make(map[string]struct{}, 2*len(s.few))
		for _, f := range s.few {
			s.many[string(f)] = struct{}{}
		}
	}
	if _, ok := s.many[string(k)]; ok {
		return true
	}
	s.many[string(k)] = struct{}{}
	return false
}
