package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"seckill/bench"
)

const benchUsage = `usage: seckill bench [flags]

Drives a flash crowd against a running seckill server and checks the
invariants afterwards. The server must run with --bench-provisioning (buyers
are created through the admin-only bulk route) and, since every buyer here
shares one IP, usually with --ip-rate 0:

  seckill serve --bench-provisioning --ip-rate 0 &
  seckill bench --target http://127.0.0.1:8080 --users 10000 --stock 1000 --conns 64

It logs in as the admin, creates a sale (no captcha), provisions the buyers
with sessions, has each fetch its hidden path, then buys over --conns
keep-alive connections: every buyer --tries times, or for --duration, at
--rate requests/s or as fast as it can. It prints requests/s, latency
percentiles, the outcomes, how long until every 202 was an order in SQL, and
the invariants I1–I4; it exits non-zero if one fails.

--pay-ratio R then runs the order lifecycle: a fraction R of the winners
pays (POST /api/orders/{id}/pay, then the provider's pay page, clicked), the
rest never do. The bench waits past their pay_deadline, resells the units
the sweeper put back to a second crowd (new buyers, and the lapsed ones, who
must be told 409), and prints notifications handled per second and the time
from deadline to unit back on sale, with I1–I5. Run the server with a short
pay window:

  seckill serve --bench-provisioning --ip-rate 0 --pay-window 10s &
  seckill bench --users 10000 --stock 1000 --pay-ratio 0.5

--url-only URL GETs one URL instead (--requests times, or for --duration),
to measure any server, e.g. a hello-world one, with the same generator.

--ws-idle N opens N WebSockets to /api/ws instead (--ws-per-user per
provisioned buyer, --conns handshakes at a time), holds them idle for
--ws-hold, and prints the server's resident memory (from the /metrics of
its operations listener, --ops) before and after, in total and per socket:

  seckill bench --target http://127.0.0.1:8080 --ops http://127.0.0.1:9090 --ws-idle 10000

flags:
`

// benchCmd runs `seckill bench`; stdout gets the result, stderr the progress.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg    bench.Config
		asJSON bool
		quiet  bool
		limit  time.Duration
	)
	fs := flag.NewFlagSet("seckill bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Target, "target", "http://127.0.0.1:8080", "base URL of the seckill server")
	fs.StringVar(&cfg.AdminPhone, "admin-phone", "", "admin's phone (default $SECKILL_ADMIN_PHONE)")
	fs.StringVar(&cfg.AdminPassword, "admin-password", "", "admin's password (default $SECKILL_ADMIN_PASSWORD)")
	fs.IntVar(&cfg.Users, "users", 10000, "buyers to provision")
	fs.Int64Var(&cfg.Stock, "stock", 1000, "units on sale")
	fs.IntVar(&cfg.Tries, "tries", 2, "purchase attempts per buyer (unless --duration)")
	fs.DurationVar(&cfg.StartIn, "start-in", 0, "start the sale this long after creating it (paths are fetched once it starts)")
	fs.IntVar(&cfg.Conns, "conns", 64, "keep-alive connections, one worker each")
	fs.DurationVar(&cfg.Duration, "duration", 0, "buy for this long, cycling through the buyers, instead of --tries")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second over all connections (0: as fast as possible); latency then counts from when each request was due")
	fs.StringVar(&cfg.URLOnly, "url-only", "", "plain mode: just GET this URL at the same concurrency")
	fs.IntVar(&cfg.Requests, "requests", 0, "plain mode: number of requests (default: --duration, or 10s)")
	fs.IntVar(&cfg.WSIdle, "ws-idle", 0, "ws-idle mode: hold this many idle WebSockets and report the server's memory")
	fs.IntVar(&cfg.WSPerUser, "ws-per-user", 4, "ws-idle mode: sockets per provisioned buyer")
	fs.DurationVar(&cfg.WSHold, "ws-hold", 5*time.Second, "ws-idle mode: how long to hold the sockets before reading the memory")
	fs.StringVar(&cfg.Ops, "ops", bench.DefaultOps, "ws-idle mode: base URL of the server's operations listener (its --ops-addr), where /metrics is")
	fs.Float64Var(&cfg.PayRatio, "pay-ratio", 0, "after the crowd, this fraction of the winners pays through the provider and the rest never pay; then wait past the deadline, resell the returned units and check I1–I5 (the server needs a short --pay-window, yet longer than the crowd: an order opened for payment too close to its deadline is refused)")
	fs.DurationVar(&cfg.SettleTimeout, "settle-timeout", 60*time.Second, "longest wait for every accepted purchase to become an order")
	fs.DurationVar(&limit, "timeout", 10*time.Minute, "give up on the whole run after this long")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	// Read here, not as flag defaults, so -h never prints the password.
	cfg.AdminPhone = cmp.Or(cfg.AdminPhone, os.Getenv("SECKILL_ADMIN_PHONE"))
	cfg.AdminPassword = cmp.Or(cfg.AdminPassword, os.Getenv("SECKILL_ADMIN_PASSWORD"))
	if cfg.URLOnly == "" && (cfg.AdminPhone == "" || cfg.AdminPassword == "") {
		return errors.New("bench: --admin-phone and --admin-password (or SECKILL_ADMIN_PHONE/PASSWORD) are needed to provision the sale")
	}
	if cfg.PayRatio < 0 || cfg.PayRatio > 1 {
		return fmt.Errorf("bench: --pay-ratio %v is not between 0 and 1", cfg.PayRatio)
	}
	if !quiet {
		cfg.Progress = stderr
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if asJSON {
		if err := res.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		res.WriteText(stdout)
	}
	if failed := res.Failed(); len(failed) > 0 {
		return fmt.Errorf("bench: %d check(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	if res.Mode == bench.ModePlain && !res.OK {
		return fmt.Errorf("bench: %d of %d requests were not answered 200", res.Requests-res.Outcomes.OK, res.Requests)
	}
	return nil
}
