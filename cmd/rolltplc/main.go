// Command rolltplc compiles, checks and formats .rolltpl conversion
// templates, and converts checkpoints with them. Run `rolltplc help`.
package main

import (
	"os"

	"github.com/rolltpl/rolltpl/cmd/rolltplc/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
