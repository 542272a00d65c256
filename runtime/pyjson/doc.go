// Package pyjson is JSON as Python's json module reads and writes it: an
// ordered value model and an encoder compatible with json.dumps.
//
// Config files (config.json, mca_config.json) are handled as an ordered
// JSON tree so that values pass through unchanged (an integer stays an
// integer, 1e-06 stays a float) and can be written back the way Python's
// json.dumps writes them, which is how ROLL and transformers write them.
// A JSON value is one of: nil (null), bool, [Number], string, []any,
// *[Object].
//
// [AppendString] is the one JSON string quoter of the project: Python's
// ensure_ascii style for configs and index files, serde_json's style for
// safetensors headers.
package pyjson
