package resolve

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestUnknownImport: an import of no module names the nearest library or
// local module, and the names that module declares are not reported again
// as unknown references; names it does not declare still are, and when no
// module is near, no unknown reference of the file is (any could have
// come from the import). An unknown reference that a module the file does
// not import declares names that module.
func TestUnknownImport(t *testing.T) {
	lib := fstest.MapFS{
		"common.rolltpl":   {Data: []byte("config dense_llm {\n    hidden_size -> hidden_size\n}\nweights embeddings {\n}\n")},
		"parallel.rolltpl": {Data: []byte("parallel default {\n}\n")},
	}
	const local = "mca mine {\n    swiglu = true\n}\n"
	tests := []struct {
		name, src string
		want      []string
	}{{
		name: "library typo",
		src:  "import \"commons\"\ntemplate t {\n    config { use dense_llm }\n    weights { use embeddings }\n    mca { use mine }\n}\n",
		want: []string{
			`dir/a.rolltpl:1:8: error: Unknown import: No file commons.rolltpl beside dir/a.rolltpl nor in the standard library. Did you mean "common"? [unknown-import]`,
			`dir/a.rolltpl:5:15: error: Unknown mca name: No mca block named "mine" is declared in this file or the files it imports. Module "blocks" declares it: add import "blocks". [unknown-reference]`,
		},
	}, {
		name: "local typo",
		src:  "import \"blocs\"\nimport \"parallel\"\ntemplate t {\n    mca { use mine }\n    parallel { use default }\n    weights { use embeddings }\n}\n",
		want: []string{
			`dir/a.rolltpl:1:8: error: Unknown import: No file blocs.rolltpl beside dir/a.rolltpl nor in the standard library. Did you mean "blocks"? [unknown-import]`,
			`dir/a.rolltpl:6:19: error: Unknown weights name: No weights block named "embeddings" is declared in this file or the files it imports. Module "common" declares it: add import "common". [unknown-reference]`,
		},
	}, {
		name: "nothing near",
		src:  "import \"zzzzzzzzzz\"\ntemplate t {\n    mca { use mine }\n    weights { use embedings }\n}\n",
		want: []string{
			`dir/a.rolltpl:1:8: error: Unknown import: No file zzzzzzzzzz.rolltpl beside dir/a.rolltpl nor in the standard library. [unknown-import]`,
		},
	}, {
		name: "bad import",
		src:  "import \"\"\ntemplate t {\n    mca { use mine }\n}\n",
		want: []string{
			`dir/a.rolltpl:1:8: error: Invalid import path: Import paths name a file without its .rolltpl extension, like "common". [bad-import]`,
		},
	}, {
		name: "no failed import",
		src:  "import \"common\"\ntemplate t {\n    weights { use embedings }\n}\n",
		want: []string{
			`dir/a.rolltpl:3:19: error: Unknown weights name: No weights block named "embedings" is declared in this file or the files it imports. Did you mean "embeddings"? [unknown-reference]`,
		},
	}, {
		name: "import missing",
		src:  "import \"common\"\ntemplate t {\n    parallel { use default }\n    mca { use nowhere }\n}\ntemplate u extends base {\n}\n",
		want: []string{
			`dir/a.rolltpl:3:20: error: Unknown parallel name: No parallel block named "default" is declared in this file or the files it imports. Module "parallel" declares it: add import "parallel". [unknown-reference]`,
			`dir/a.rolltpl:4:15: error: Unknown mca name: No mca block named "nowhere" is declared in this file or the files it imports. [unknown-reference]`,
			`dir/a.rolltpl:6:20: error: Unknown template name: No template named "base" is declared in this file or the files it imports. [unknown-reference]`,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ld := &Loader{Lib: lib, Overlay: map[string][]byte{"dir/a.rolltpl": []byte(tc.src), "dir/blocks.rolltpl": []byte(local)}}
			_, diags := ld.Load([]string{"dir/a.rolltpl"})
			diags.Sort()
			var got []string
			for _, d := range diags {
				got = append(got, d.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}
