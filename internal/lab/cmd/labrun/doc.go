// Command labrun runs one command inside the smolvm KVM lab VM (see
// internal/lab and docs/LAB.md) and exits with its status:
//
//	go run ./internal/lab/cmd/labrun [-timeout 10m] [-mem 4096] [-cpus 2] [-share DIR]... [-env K=V]... -- CMD [ARGS...]
//
// The command sees the host's files at their usual paths (writes stay in the
// VM unless under a -share directory) and a working /dev/kvm. Exit status
// 125 means the lab itself failed.
package main
