// Package deps pins the project's chosen modules in go.mod while the packages
// that use them are being written, so parallel work does not race on go.mod.
// Delete an import here once a real package imports that module.
package deps

import (
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/hanwen/go-fuse/v2/fs"
)
