package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"
	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/clitest"
)

// lspMistake is a template with one mistake after multi-byte and astral
// characters: on line 10, "renam" follows "😀é中" on the same line.
const lspMistake = `# Démo 😀 — one mistake, after multi-byte and astral characters.
import "common"
import "parallel"

template llama {
    layer_prefix = "model.layers."
    config { use llm }
    mca { use rope }
    weights {
        rename "😀é中.weight" -> "output_layer.weight"  renam "model.norm.weight" -> "decoder.final_layernorm.weight"
        qkv ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight"
            -> ".self_attention.linear_qkv.weight"
    }
    parallel { use default }
}
`

func lspFrame(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(b), b)
}

func lspMsg(id int, method string, params any) string {
	m := map[string]any{"jsonrpc": "2.0", "method": method}
	if id > 0 {
		m["id"] = id
	}
	if params != nil {
		m["params"] = params
	}
	return lspFrame(m)
}

type lspOut struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// readFrames splits standard output into frames and fails on anything
// else: stdout must carry nothing but frames.
func readFrames(t *testing.T, out string) []lspOut {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(out))
	var msgs []lspOut
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return msgs
		}
		n, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "Content-Length: ")
		if !ok {
			t.Fatalf("stdout is not a frame header: %q", line)
		}
		length, err := strconv.Atoi(n)
		if err != nil {
			t.Fatal(err)
		}
		if blank, _ := r.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("no blank line after the header: %q", blank)
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		var m lspOut
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("frame is not JSON: %v: %s", err, body)
		}
		msgs = append(msgs, m)
	}
}

func fileURI(p string) string { return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String() }

type lspPos struct {
	Line      int `json:"line"`
	Character int `json:"character"`
}

type lspDiag struct {
	Range struct {
		Start lspPos `json:"start"`
		End   lspPos `json:"end"`
	} `json:"range"`
	Severity int    `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// TestLSPMatchesCheck runs `rolltplc lsp` through Run with a whole session
// on stdin and compares the diagnostics it publishes with
// `rolltplc check --diags=json` on the same file.
func TestLSPMatchesCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mine.rolltpl")
	if err := os.WriteFile(path, []byte(lspMistake), 0o644); err != nil {
		t.Fatal(err)
	}
	uri := fileURI(path)
	stdin := lspMsg(1, "initialize", map[string]any{"capabilities": map[string]any{}}) +
		lspMsg(0, "initialized", map[string]any{}) +
		lspMsg(0, "textDocument/didOpen", map[string]any{"textDocument": map[string]any{"uri": uri, "languageId": "rolltpl", "version": 7, "text": lspMistake}}) +
		lspMsg(2, "shutdown", nil) +
		lspMsg(0, "exit", nil)
	code, stdout, stderr := run(t, stdin, "lsp")
	if code != ExitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	msgs := readFrames(t, stdout)
	var got []lspDiag
	published := 0
	for _, m := range msgs {
		if m.Method == "textDocument/publishDiagnostics" {
			var p struct {
				URI         string    `json:"uri"`
				Version     int       `json:"version"`
				Diagnostics []lspDiag `json:"diagnostics"`
			}
			if err := json.Unmarshal(m.Params, &p); err != nil {
				t.Fatal(err)
			}
			if p.URI != uri || p.Version != 7 {
				t.Errorf("published for %s version %d, want %s version 7", p.URI, p.Version, uri)
			}
			got = p.Diagnostics
			published++
		}
	}
	if published != 1 || len(msgs) != 3 {
		t.Errorf("%d messages with %d publishDiagnostics, want initialize and shutdown responses and one publish", len(msgs), published)
	}

	// What `rolltplc check --diags=json` says, converted to UTF-16.
	_, js, _ := run(t, "", "check", "--diags=json", path)
	var check []struct {
		Severity, Code, Summary, Detail string
		Start, End                      struct{ Line, Column, Offset int }
	}
	if err := json.Unmarshal([]byte(js), &check); err != nil {
		t.Fatalf("check output: %v\n%s", err, js)
	}
	utf16At := func(off int) lspPos {
		lineStart := strings.LastIndex(lspMistake[:off], "\n") + 1
		return lspPos{strings.Count(lspMistake[:off], "\n"), len(utf16.Encode([]rune(lspMistake[lineStart:off])))}
	}
	var want []lspDiag
	for _, c := range check {
		var d lspDiag
		d.Range.Start, d.Range.End = utf16At(c.Start.Offset), utf16At(c.End.Offset)
		d.Severity = map[string]int{"error": 1, "warning": 2}[c.Severity]
		d.Code, d.Message = c.Code, c.Summary+": "+c.Detail
		want = append(want, d)
	}
	if len(want) != 1 || want[0].Code != "unknown-op-kind" {
		t.Fatalf("check reports %+v, want one unknown-op-kind", want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("lsp diagnostics differ from check --diags=json (-want +got):\n%s", diff)
	}
	// Counted by hand: 😀 is two UTF-16 units, é and 中 one each.
	if s := got[0].Range.Start; s != (lspPos{9, 55}) {
		t.Errorf("start %+v, want line 9 character 55", s)
	}
}

func TestLSPExitCodesAndLog(t *testing.T) {
	init := lspMsg(1, "initialize", map[string]any{"capabilities": map[string]any{}})
	if code, stdout, _ := run(t, init+lspMsg(0, "exit", nil), "lsp"); code != 1 || len(readFrames(t, stdout)) != 1 {
		t.Errorf("exit without shutdown: code %d, want 1", code)
	}
	if code, _, _ := run(t, init, "lsp"); code != 1 {
		t.Errorf("end of input without shutdown: code %d, want 1", code)
	}
	// Garbage on stdin is answered, not fatal.
	code, stdout, _ := run(t, "Content-Length: nope\r\n\r\n"+init+lspMsg(2, "shutdown", nil)+lspMsg(0, "exit", nil), "lsp")
	msgs := readFrames(t, stdout)
	if code != 0 || len(msgs) != 3 || msgs[0].Error == nil || msgs[0].Error.Code != -32700 {
		t.Errorf("garbage then a session: code %d, messages %+v", code, msgs)
	}

	logFile := filepath.Join(t.TempDir(), "lsp.log")
	code, _, stderr := run(t, init+lspMsg(2, "shutdown", nil)+lspMsg(0, "exit", nil), "lsp", "--log-file", logFile)
	if code != 0 || stderr != "" {
		t.Errorf("--log-file: code %d, stderr %q", code, stderr)
	}
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "started") {
		t.Errorf("log file: %q, %v", b, err)
	}
	if code, _, _ := run(t, "", "lsp", "--stdio", "extra"); code != ExitUsage {
		t.Errorf("unexpected argument: code %d, want %d", code, ExitUsage)
	}
	code, stdout, _ = run(t, "", "help", "lsp")
	if code != 0 || !strings.Contains(stdout, "--log-file") || strings.Contains(stdout, "--stdio") {
		t.Errorf("help lsp: code %d\n%s", code, stdout)
	}
}

// neovimInit is the minimal configuration a user writes: start
// `rolltplc lsp` for .rolltpl files. The rest drives the test: wait for
// diagnostics, ask for a hover, write both as JSON and quit.
const neovimInit = `
local bin, out, root = os.getenv("ROLLTPL_BIN"), os.getenv("ROLLTPL_OUT"), os.getenv("ROLLTPL_ROOT")
local hline, hchar = string.match(os.getenv("ROLLTPL_HOVER"), "(%d+):(%d+)")

vim.cmd([[autocmd BufRead,BufNewFile *.rolltpl setfiletype rolltpl]])
vim.api.nvim_create_autocmd("FileType", {
  pattern = "rolltpl",
  callback = function(args)
    local config = { cmd = { bin, "lsp" }, root_dir = root, name = "rolltpl" }
    if vim.lsp.start then
      vim.lsp.start(config) -- Neovim 0.8 and later
    else
      vim.lsp.buf_attach_client(args.buf, vim.lsp.start_client(config)) -- Neovim 0.7
    end
  end,
})

vim.api.nvim_create_autocmd("VimEnter", {
  callback = function()
    local result = { diagnostics = {} }
    local ok, err = pcall(function()
      result.got = vim.wait(30000, function() return #vim.diagnostic.get(0) > 0 end, 20)
      for _, d in ipairs(vim.diagnostic.get(0)) do
        table.insert(result.diagnostics, { message = d.message, lnum = d.lnum, col = d.col, end_col = d.end_col })
      end
      local params = { textDocument = { uri = vim.uri_from_bufnr(0) },
                       position = { line = tonumber(hline), character = tonumber(hchar) } }
      for _, r in pairs(vim.lsp.buf_request_sync(0, "textDocument/hover", params, 10000) or {}) do
        if r.result and r.result.contents then result.hover = r.result.contents.value end
        if r.err then result.hover_error = vim.inspect(r.err) end
      end
    end)
    if not ok then result.error = tostring(err) end
    local f = assert(io.open(out, "w"))
    f:write(vim.fn.json_encode(result))
    f:close()
    vim.cmd("qall!")
  end,
})
`

// TestLSPNeovim runs Debian's Neovim headless against rolltplc (this test
// binary standing in for it, see clitest.Main) as a language server: it
// opens a file with a mistake and reads back the diagnostic Neovim received
// and a hover. Neovim turns the UTF-16 character into a byte column with its
// own code, so the column checks our conversion too.
func TestLSPNeovim(t *testing.T) {
	nvim, err := exec.LookPath("nvim")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nvim is required in CI (.ci/run installs Debian's neovim): %v", err)
		}
		t.Skip("nvim is not installed")
	}
	dir := t.TempDir()
	// rolltplc is this test binary standing in for it (clitest.Main):
	// the same cli.Run behind main, without linking the command again.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "rolltplc")
	wrapper := fmt.Sprintf("#!/bin/sh\n%s=1 exec %q \"$@\"\n", clitest.StandInEnv, self)
	if err := os.WriteFile(bin, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "work")
	src := filepath.Join(root, "mine.rolltpl")
	initLua := filepath.Join(dir, "init.lua")
	out := filepath.Join(dir, "result.json")
	for name, text := range map[string]string{src: lspMistake, initLua: neovimInit} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(lspMistake, "\n")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nvim, "--headless", "-n", "-i", "NONE", "-u", initLua, src)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"ROLLTPL_BIN="+bin, "ROLLTPL_OUT="+out, "ROLLTPL_ROOT="+root,
		// Hover over the qkv op kind.
		fmt.Sprintf("ROLLTPL_HOVER=%d:%d", 10, strings.Index(lines[10], "qkv")+1),
		"HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nvim: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("nvim wrote no result: %v\n%s", err, stderr.String())
	}
	var res struct {
		Got         bool
		Error       string
		HoverError  string `json:"hover_error"`
		Hover       string
		Diagnostics []struct {
			Message   string
			Lnum, Col int
			EndCol    int `json:"end_col"`
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("result: %v\n%s", err, b)
	}
	if res.Error != "" || res.HoverError != "" || !res.Got {
		t.Fatalf("nvim: %+v", res)
	}
	if len(res.Diagnostics) != 1 {
		t.Fatalf("diagnostics %+v, want one", res.Diagnostics)
	}
	d := res.Diagnostics[0]
	// Neovim's col is a byte column in the line.
	col := strings.Index(lines[9], "  renam ") + 2
	if d.Message != `Unknown op kind: "renam" is not a known op kind. Did you mean "rename"?` || d.Lnum != 9 || d.Col != col {
		t.Errorf("diagnostic %+v, want the unknown op kind on line 9 (0-based), byte column %d", d, col)
	}
	if !strings.Contains(res.Hover, "**op** `qkv` · 3 HF names → 1 MCA name") {
		t.Errorf("hover %q, want the qkv op's documentation", res.Hover)
	}
}
