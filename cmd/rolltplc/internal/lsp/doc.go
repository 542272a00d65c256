// Package lsp implements `rolltplc lsp`: a Language Server Protocol server
// for .rolltpl files over stdio.
//
// # Why a hand-written layer
//
// The protocol layer (JSON-RPC framing, ~20 message structs) is written here
// with the standard library only, as STYLE.md §4 recommends:
//
//   - The surface is small: the lifecycle, text sync, diagnostics, hover,
//     completion, definition, formatting and document symbols. That is a few
//     hundred lines of structs and framing, not a framework.
//   - No dependencies: the LSP libraries for Go bring a logging stack (zap,
//     commonlog), a pre-1.0 or weeks-old API, or a Go floor set by someone
//     else, for code we would use a tenth of.
//   - We own UTF-16. Positions are where language servers get things wrong:
//     the compiler works in byte offsets, the protocol in UTF-16 code units.
//     Every conversion goes through lang/token.File's UTF16Column and
//     OffsetUTF16, in one place (document.position and document.offset in
//     server.go).
//
// If the surface grows (semantic tokens, code actions, workspace folders),
// STYLE.md §4 names the library to move to; keep it behind this package.
//
// # Shape
//
//   - jsonrpc.go: framing (Content-Length headers) with resynchronisation
//     after garbage, message validation, the error codes.
//   - protocol.go: the protocol structs, written from the specification.
//   - server.go: the lifecycle, dispatch (one message at a time, in order),
//     open documents and text sync.
//   - diagnostics.go: compile with the editor's text in the overlay and
//     publish diagnostics in UTF-16 positions.
//   - query.go, hover.go, complete.go, definition.go (also formatting and
//     document symbols): the language features, read from the compiler's
//     side tables (resolve.Info's Defs and Uses), the syntax tree and, for
//     completion, the tokens before the cursor.
//
// Diagnostics come from compiler.Compile exactly as `rolltplc check`
// computes them: same codes, same ranges, converted to UTF-16.
//
// Messages are handled one at a time, in order. Edits only mark documents
// for checking; checks run when no message is waiting or before the next
// request, so a burst of keystrokes costs one compilation and no answer
// overtakes the diagnostics of an earlier edit.
package lsp
