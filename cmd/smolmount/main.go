// Command smolmount mounts a .smolmachine bundle as a read-only FUSE
// filesystem and serves its memory and disks lazily; it is also the bundle's
// daemon that serves userfaultfd page faults for VMs restored from it.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "smolmount: not built yet (see issue [smolmount])")
	os.Exit(2)
}
