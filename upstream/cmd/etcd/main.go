// Command etcd is the etcd server at the version the pinned Kubernetes release
// is tested with, built from the etcd Go module so that no system package is
// needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
