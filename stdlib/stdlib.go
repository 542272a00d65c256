// Package stdlib embeds rolltpl's standard library: the templates of every
// model type ROLL ships (templates/*.rolltpl) and the blocks they share.
// It imports nothing from the project.
package stdlib

import (
	"embed"
	"io/fs"
)

//go:embed templates/*.rolltpl schema/*.rolltpl
var files embed.FS

// Templates returns the templates directory: a file system whose root holds
// the NAME.rolltpl files.
func Templates() fs.FS {
	sub, err := fs.Sub(files, "templates")
	if err != nil {
		panic(err) // the embedded tree always has templates/
	}
	return sub
}

// Schemas returns the schema directory: a file system whose root holds the
// config schemas (schema/*.rolltpl) templates are checked against.
func Schemas() fs.FS {
	sub, err := fs.Sub(files, "schema")
	if err != nil {
		panic(err) // the embedded tree always has schema/
	}
	return sub
}
