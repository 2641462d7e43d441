// Command containerd-shim-hull-v2 is hull's containerd shim v2: containerd
// runs it for the runtime type io.containerd.hull.v2.
package main

import (
	"context"

	"github.com/containerd/containerd/runtime/v2/shim"

	hullshim "github.com/hull-runtime/hull/internal/shim"
)

func main() {
	hullshim.Register()
	shim.RunManager(context.Background(), hullshim.Manager{}, hullshim.Options)
}
