// Command seckill runs the flash-sale engine.
//
//	seckill serve    run the server (zero setup: SQLite + embedded NATS in ./data)
//	seckill bench    drive a flash crowd against a server and check the invariants
//	seckill sandbox  run the sandbox payment provider on its own port
//
// Every flag has an environment fallback: --data is SECKILL_DATA, --admin-phone
// is SECKILL_ADMIN_PHONE, and so on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "seckill:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: seckill <command> [flags]

commands:
  serve    run the flash-sale server (seckill serve -h lists its flags)
  bench    drive a flash crowd against a server (seckill bench -h)
  sandbox  run the sandbox payment provider (seckill sandbox -h)
`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "bench":
		return benchCmd(ctx, args[1:], os.Stdout, os.Stderr)
	case "sandbox":
		return sandboxCmd(ctx, args[1:], os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// serve runs the server until ctx ends, then shuts it down gracefully. If
// a listener fails first, it shuts down too and returns the failure: the
// process exits non-zero.
func serve(ctx context.Context, args []string) error {
	m := NewMain()
	if err := m.ParseFlags(args); err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	// The operations line first: a supervisor (or a test) that waits for
	// the listening line has both addresses then.
	if ops := m.OpsURL(); ops != "" {
		fmt.Printf("operations (metrics, health checks) on %s\n", ops)
	}
	fmt.Printf("seckill is listening on %s\n", m.URL())
	if err := m.Wait(ctx); err != nil {
		m.log.Error("listener failed; shutting down", "err", err)
		return errors.Join(err, m.Close())
	}
	m.log.Info("shutting down")
	return m.Close()
}
