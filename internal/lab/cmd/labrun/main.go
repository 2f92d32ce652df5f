package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/smolvm/smolvm/internal/lab"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var o lab.Options
	var shares, env list
	flag.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "limit for the whole run, boot included")
	flag.DurationVar(&o.Silence, "silence", 0, "give the lab up as wedged after this long without console or command output (0: never)")
	flag.StringVar(&o.TCGThread, "tcg-thread", os.Getenv("SMOLVM_LAB_TCG_THREAD"), "QEMU TCG threading: multi (default) or single")
	flag.IntVar(&o.MemMB, "mem", 4096, "lab VM memory in MiB")
	flag.IntVar(&o.CPUs, "cpus", 2, "lab VM vCPUs")
	flag.StringVar(&o.Dir, "dir", "", "working directory inside the lab (default: the current one)")
	flag.StringVar(&o.ConsoleLog, "console", "", "write the lab VM's kernel console to this file")
	flag.Var(&shares, "share", "host directory mounted writable at the same path (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE added to the command's environment (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: labrun [flags] -- CMD [ARGS...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	o.Cmd, o.Shares, o.Env = flag.Args(), shares, env
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := lab.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labrun:", err)
		os.Exit(125)
	}
	os.Exit(code)
}
