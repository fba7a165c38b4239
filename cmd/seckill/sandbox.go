package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"seckill/payment"
	"seckill/payment/sandbox"
)

const sandboxUsage = `usage: seckill sandbox [flags]

Runs the sandbox payment provider on its own port, as a real provider would
run: its API at /sandbox/gateway.do (point seckill serve's provider URL at
it), its pay page at /sandbox/pay/{payment_id}, and its notifier, which
resends every signed notification on Alipay's schedule (2m, 10m, 10m, 1h,
2h, 6h, 15h; --retry-scale compresses it) until the shop answers "success".

--data is the data directory of seckill serve (the same SECKILL_DATA): the
sandbox keeps its state and key pair in <data>/sandbox and checks the shop's
requests with the shop's public key, by default
<data>/payment/merchant.pub.pem, where seckill serve keeps it (the sandbox
reads it when the first request comes, so either may start first). It prints the path of its own public key, for seckill serve.

Every other flag falls back to SECKILL_SANDBOX_<FLAG> (--retry-scale:
SECKILL_SANDBOX_RETRY_SCALE), so that serve's SECKILL_ADDR is not taken.

flags:
`

// sandboxConfig is what `seckill sandbox` can be told.
type sandboxConfig struct {
	Addr        string
	DataDir     string
	AppID       string
	MerchantKey string
	PublicURL   string
	RetryScale  float64
}

func parseSandboxFlags(args []string, stderr io.Writer) (sandboxConfig, error) {
	c := sandboxConfig{Addr: "127.0.0.1:8090", DataDir: "data", AppID: sandbox.DefaultAppID, RetryScale: 1}
	fs := flag.NewFlagSet("seckill sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), sandboxUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "seckill serve's data directory: state in <data>/sandbox, the shop's key in <data>/payment")
	fs.StringVar(&c.AppID, "app-id", c.AppID, "the merchant's app id (the shop must use the same)")
	fs.StringVar(&c.MerchantKey, "merchant-public-key", "", "PEM file of the shop's public key (default <data>/payment/merchant.pub.pem)")
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL buyers' browsers reach the sandbox at (default: from the Host the shop calls it by)")
	fs.Float64Var(&c.RetryScale, "retry-scale", c.RetryScale, "multiplies the resend schedule: 0.001 turns 2 minutes into 120 ms")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SECKILL_SANDBOX_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if f.Name == "data" {
			env = "SECKILL_DATA" // serve's directory, by design
		}
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	if c.MerchantKey == "" {
		c.MerchantKey = payment.PublicKeyPath(payment.MerchantKeyPath(c.DataDir))
	}
	if c.RetryScale <= 0 {
		return c, errors.New("--retry-scale must be positive")
	}
	return c, err
}

// sandboxCmd runs `seckill sandbox` until ctx ends.
func sandboxCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseSandboxFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	sb, err := sandbox.Open(ctx, sandbox.Config{
		DataDir: filepath.Join(c.DataDir, "sandbox"), AppID: c.AppID, MerchantKeyFile: c.MerchantKey,
		PublicURL: c.PublicURL, RetryScale: c.RetryScale, Log: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return errors.Join(err, sb.Close())
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "sandbox payment provider listening on %s\n", base)
	fmt.Fprintf(stdout, "gateway (the shop's provider URL): %s/sandbox/gateway.do\n", base)
	fmt.Fprintf(stdout, "its public key (the shop's provider key): %s\n", sb.PublicKeyPath())
	fmt.Fprintf(stdout, "app id: %s; the shop's public key is read from %s\n", c.AppID, c.MerchantKey)
	if _, err := os.Stat(c.MerchantKey); err != nil {
		log.Warn("no merchant public key yet: requests are refused until the shop's key is there", "path", c.MerchantKey)
	}
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("sandbox listener: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(sctx), sb.Close())
}

// handlerTransport is an http.RoundTripper that serves each request with a
// handler in this process: no connection, no descriptor.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	w := &recordedResponse{header: http.Header{}}
	t.h.ServeHTTP(w, req.Clone(req.Context()))
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(bytes.NewReader(w.body.Bytes())), ContentLength: int64(w.body.Len()),
		Request: req,
	}, nil
}

// recordedResponse keeps what a handler answers.
type recordedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recordedResponse) Header() http.Header { return w.header }

func (w *recordedResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recordedResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
