// Command outpost is the single binary of Outpost: the CLI and every server
// role (node agent, container init, and later the workspace and cluster agent).
package main

import (
	"os"

	"outpost.dev/outpost/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
