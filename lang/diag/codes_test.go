package diag

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var kebab = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// TestCodeRegistry checks the registry itself: every code kebab-case,
// registered once, with a summary; and the constants of codes.go exactly
// the registered codes (a constant without an entry, or an entry whose
// code no constant names, fails).
func TestCodeRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range codes {
		if !kebab.MatchString(c.Code) {
			t.Errorf("code %q is not kebab-case", c.Code)
		}
		if seen[c.Code] {
			t.Errorf("code %q registered twice", c.Code)
		}
		seen[c.Code] = true
		if c.Summary == "" || strings.Contains(c.Summary, "\n") {
			t.Errorf("code %q: summary must be one non-empty line", c.Code)
		}
		if c.Severity != Error && c.Severity != Warning && c.Severity != Info {
			t.Errorf("code %q: bad severity %d", c.Code, c.Severity)
		}
		if got, ok := LookupCode(c.Code); !ok || got != c {
			t.Errorf("LookupCode(%q) = %v, %v", c.Code, got, ok)
		}
	}
	if _, ok := LookupCode("no-such-code"); ok {
		t.Error("LookupCode found an unregistered code")
	}
	if got := Codes(); len(got) != len(codes) || !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].Code < got[j].Code }) {
		t.Errorf("Codes() returned %d codes, unsorted or not all of them", len(got))
	}

	// The constants of codes.go, read from the source.
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("codes.go: a code constant must be a string literal, got %T", v)
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				consts = append(consts, s)
			}
		}
	}
	var registered []string
	for _, c := range codes {
		registered = append(registered, c.Code)
	}
	sort.Strings(consts)
	sort.Strings(registered)
	if diff := cmp.Diff(consts, registered); diff != "" {
		t.Errorf("constants of codes.go (-) and registered codes (+) differ:\n%s", diff)
	}
}

// specCodes reads the table of lang/spec.md §11: every code in backquotes
// in a row's first column, with the severity of its second column.
func specCodes(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../spec.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## 11. Diagnostics")
	if start < 0 {
		t.Fatal("lang/spec.md has no section \"## 11. Diagnostics\"")
	}
	text = text[start+1:]
	if end := strings.Index(text, "\n## "); end >= 0 {
		text = text[:end]
	}
	out := map[string]string{}
	code := regexp.MustCompile("`([^`]+)`")
	rows := 0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) < 4 {
			t.Errorf("spec §11: row without a severity column: %s", line)
			continue
		}
		rows++
		sev := strings.TrimSpace(cols[2])
		for _, m := range code.FindAllStringSubmatch(cols[1], -1) {
			if !kebab.MatchString(m[1]) {
				t.Errorf("spec §11: %q is not a code (wildcards are not allowed: list each code)", m[1])
				continue
			}
			if _, dup := out[m[1]]; dup {
				t.Errorf("spec §11: %s listed twice", m[1])
			}
			out[m[1]] = sev
		}
	}
	if rows == 0 {
		t.Fatal("spec §11 has no table of codes")
	}
	return out
}

// TestCodesDocumented checks the registry against lang/spec.md §11 both
// ways: every registered code has a row, every code of the table is
// registered, and the table's severity is the registry's.
func TestCodesDocumented(t *testing.T) {
	spec := specCodes(t)
	for _, c := range codes {
		sev, ok := spec[c.Code]
		switch {
		case !ok:
			t.Errorf("%s is registered but not documented in lang/spec.md §11", c.Code)
		case sev != c.Severity.String():
			t.Errorf("%s: spec §11 says %q, the registry %q", c.Code, sev, c.Severity)
		}
	}
	for code := range spec {
		if _, ok := LookupCode(code); !ok {
			t.Errorf("%s is documented in lang/spec.md §11 but not registered in lang/diag", code)
		}
	}
}

// TestCodesThroughConstants: the module's non-test Go files name codes
// through the registry's constants only. A string literal equal to a
// registered code anywhere but codes.go fails, and so does any kebab-case
// string literal where a code goes: the code argument of diag.Errorf and
// diag.Warningf (and of helpers named errorf, warningf, warnf or unknown,
// which take it second too), a Code field of a composite literal, or an
// assignment to a Code field; so every code in use is one the registry
// (and so spec §11 and the corpus) knows.
func TestCodesThroughConstants(t *testing.T) {
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == filepath.Join(root, "lang", "diag", "codes.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		n++
		for _, lit := range codeLiterals(f) {
			t.Errorf("%s: the code %s as a literal; use its constant from lang/diag/codes.go (registering it there first)", fset.Position(lit.Pos()), lit.Value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Errorf("scanned only %d Go files", n)
	}
}

// codeHelpers are the names of functions whose second argument is a
// diagnostic code.
var codeHelpers = map[string]bool{"Errorf": true, "Warningf": true, "errorf": true, "warningf": true, "warnf": true, "unknown": true}

// codeLiterals returns the string literals of f that are codes: a
// registered code anywhere, any kebab-case string where a code goes.
func codeLiterals(f *ast.File) []*ast.BasicLit {
	var out []*ast.BasicLit
	// str returns e if it is a string literal that reads as a code.
	str := func(e ast.Expr) *ast.BasicLit {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && kebab.MatchString(s) {
				return lit
			}
		}
		return nil
	}
	isCode := func(e ast.Expr) bool {
		if id, ok := e.(*ast.Ident); ok {
			return id.Name == "Code"
		}
		if sel, ok := e.(*ast.SelectorExpr); ok {
			return sel.Sel.Name == "Code"
		}
		return false
	}
	seen := map[*ast.BasicLit]bool{}
	add := func(lit *ast.BasicLit) {
		if lit != nil && !seen[lit] {
			seen[lit] = true
			out = append(out, lit)
		}
	}
	ast.Inspect(f, func(x ast.Node) bool {
		switch x := x.(type) {
		case *ast.BasicLit:
			if s, err := strconv.Unquote(x.Value); err == nil && x.Kind == token.STRING && byCode[s] != (CodeInfo{}) {
				add(x)
			}
		case *ast.CallExpr:
			name := ""
			switch fn := x.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			if codeHelpers[name] && len(x.Args) >= 2 {
				add(str(x.Args[1]))
			}
		case *ast.KeyValueExpr:
			if isCode(x.Key) {
				add(str(x.Value))
			}
		case *ast.AssignStmt:
			for i, l := range x.Lhs {
				if isCode(l) && len(x.Rhs) == len(x.Lhs) {
					add(str(x.Rhs[i]))
				}
			}
		}
		return true
	})
	return out
}
