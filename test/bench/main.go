// Command bench measures the latency Sluice adds, in one run against one fake provider.
//
// It starts the in-process fake provider (internal/fakeprovider, zero delay, loopback) and
// measures three paths to it with the same small OpenAI chat completions request:
//
//   - direct: the load generator calls the fake provider itself;
//   - envoy-only: client → Envoy → fake, configured by an in-process xds server with
//     ext_proc disabled (xds.Params.DisableExtProc), the floor any Envoy-based gateway pays;
//   - sluice: the full governed path, the real `sluice serve --config F` child (Envoy,
//     extproc, dispatcher) with a virtual key minted by internal/vkey; the dispatcher swaps
//     it for the provider credential, so a broken swap fails the run;
//   - sluice-guarded: the same with a key whose PII guardrail (redact) inspects the request,
//     the answer and, for streams, every chunk: the cost of inspection, next to the row
//     without it;
//   - sluice-governed: the same with a key under a block budget and RPM/TPM limits, reserved
//     at admission and settled at the end in the in-process counter store.
//
// Sluice rows also report ext_proc messages per request, from Envoy's own counters: 2 for a
// key without response guardrails (request headers and body), more for a guarded one.
//
// With -stream (default on) each path is also measured with "stream": true
// (direct-stream, envoy-only-stream, sluice-stream), latency being time to last byte.
//
// Each (path, concurrency) cell gets its own Go net/http client whose keep-alive pool is
// sized to the concurrency, warms up, then sends a fixed number of requests: -c1n requests
// one at a time (latency), and -n requests from -c workers (throughput under load). Every
// response must be a 200 with a complete answer; any error is reported loudly and makes the
// program exit 1. "added" columns are the path's percentile minus direct's (or
// direct-stream's) at the same concurrency.
//
// The load generator, the fake provider, both Envoys and sluice share one machine (the
// report says how many cores): the client competes with what it measures, so absolute
// numbers are pessimistic and "added" is the figure to compare. On a small machine p99 is
// noisy (an "added p99" can even come out negative); use -count to pool several repeats.
//
// Usage (make bench builds sluice and installs Envoy first):
//
//	make bench [BENCH_FLAGS='-n 20000 -c 32']
//	go run ./test/bench -sluice bin/sluice -envoy "$(cat .venv/envoy-1.40.0.path)" [flags]
//
// Flags:
//
//	-sluice PATH           the sluice binary (required; make bench passes bin/sluice)
//	-envoy PATH            the Envoy binary (default: envoy.FindBinary)
//	-n N                   requests per concurrent cell (default 5000)
//	-c N                   concurrency of the concurrent cells (default 16)
//	-c1n N                 requests per sequential (concurrency 1) cell; 0 skips them
//	                       (default 2000)
//	-warmup N              warm-up requests before every cell, not measured (default 200)
//	-count N               repeat every cell N times, interleaving paths; the table pools
//	                       the repeats, -benchfmt prints one line per repeat (default 1)
//	-stream                also measure streamed requests (default true)
//	-envoy-concurrency N   worker threads of both Envoys (default 2)
//	-timeout D             overall deadline, start-up included (default 5m)
//	-benchfmt              also print Go benchmark lines (BenchmarkPath/sluice/c16-2 ...)
//	-collector MODE        sluice's OTLP collector: none (default), up (an in-process
//	                       receiver) or down (one that accepts and never answers): with
//	                       down, the rows show what a dead collector costs requests
//	-envoy-stats           also print both Envoys' own request-time histograms (P50..P99.9,
//	                       ms, cumulative over the run): where sluice's added time goes,
//	                       Envoy+extproc (downstream minus upstream) or the dispatcher hop.
//	                       Coarse: Envoy's default buckets are 0.5, 1, 5, 10 ms ..., so a
//	                       sub-0.5 ms P50 prints as an interpolated value near 0
//
// Comparing runs with benchstat (golang.org/x/perf/cmd/benchstat): -benchfmt lines carry
// ns/op (wall time per request: the inverse of throughput), req/s, p50-ns and p99-ns, and
// benchstat ignores the rest of the output, so
//
//	make bench BENCH_FLAGS='-benchfmt -count 6' > old.txt
//	# change something, rebuild
//	make bench BENCH_FLAGS='-benchfmt -count 6' > new.txt
//	benchstat old.txt new.txt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
)

type options struct {
	sluiceBin, envoyBin string
	n, c, c1n, warmup   int
	count, envoyConc    int
	timeout             time.Duration
	stream, benchfmt    bool
	envoyStats          bool
	collector           string
	args                []string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.sluiceBin, "sluice", "", "the sluice binary (required)")
	fs.StringVar(&o.envoyBin, "envoy", "", "the Envoy binary (default: $SLUICE_ENVOY_BIN, PATH, ./.venv)")
	fs.IntVar(&o.n, "n", 5000, "requests per concurrent cell")
	fs.IntVar(&o.c, "c", 16, "concurrency of the concurrent cells")
	fs.IntVar(&o.c1n, "c1n", 2000, "requests per sequential (concurrency 1) cell")
	fs.IntVar(&o.warmup, "warmup", 200, "warm-up requests before every cell")
	fs.IntVar(&o.count, "count", 1, "repeat every cell this many times")
	fs.BoolVar(&o.stream, "stream", true, "also measure streamed requests")
	fs.IntVar(&o.envoyConc, "envoy-concurrency", envoy.DefaultConcurrency, "worker threads of both Envoys")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "overall deadline, start-up included")
	fs.BoolVar(&o.benchfmt, "benchfmt", false, "also print Go benchmark-format lines for benchstat")
	fs.BoolVar(&o.envoyStats, "envoy-stats", false, "also print both Envoys' own request-time histograms")
	fs.StringVar(&o.collector, "collector", "none", "sluice's OTLP collector: none, up (an in-process receiver) or down (one that never answers)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.args = args
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if o.sluiceBin == "" {
		errs = append(errs, errors.New("-sluice is required (make bench passes bin/sluice)"))
	}
	const maxReq = 10_000_000
	for _, v := range []struct {
		name     string
		val, min int
		max      int
	}{{"n", o.n, 1, maxReq}, {"c", o.c, 1, 4096}, {"c1n", o.c1n, 0, maxReq},
		{"warmup", o.warmup, 0, maxReq}, {"count", o.count, 1, 1000}, {"envoy-concurrency", o.envoyConc, 1, 256}} {
		if v.val < v.min || v.val > v.max {
			errs = append(errs, fmt.Errorf("-%s %d: want %d..%d", v.name, v.val, v.min, v.max))
		}
	}
	if o.c == 1 && o.c1n > 0 {
		errs = append(errs, errors.New("-c 1 duplicates the sequential cells: use -c1n N alone, or -c1n 0 -c 1 -n N"))
	}
	if o.collector != "none" && o.collector != "up" && o.collector != "down" {
		errs = append(errs, fmt.Errorf("-collector %q: want none, up or down", o.collector))
	}
	if o.timeout <= 0 {
		errs = append(errs, errors.New("-timeout must be positive"))
	}
	return o, errors.Join(errs...)
}

func main() {
	os.Exit(benchMain(os.Args[1:], os.Stdout, os.Stderr))
}

// level is one concurrency row group.
type level struct{ conc, n int }

func benchMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if o.envoyBin == "" {
		if o.envoyBin, err = envoy.FindBinary(); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
	}
	for _, b := range []string{o.sluiceBin, o.envoyBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			fmt.Fprintf(stderr, "bench: %s: not a file (%v)\n", b, err)
			return 2
		}
	}
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "bench: %6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	}
	envoyVer := envoyVersion(ctx, o.envoyBin)

	// Start everything first: every path is then measured under the same conditions (the
	// other stacks idle), and a start-up failure costs no measurement time.
	fk, err := startFake()
	if err != nil {
		fmt.Fprintln(stderr, "bench: fake provider:", err)
		return 1
	}
	defer fk.stop()
	logf("fake provider on %s", fk.addr)
	eo, err := startEnvoyOnly(ctx, o.envoyBin, fk.addr, o.envoyConc)
	if err != nil {
		fmt.Fprintf(stderr, "bench: envoy-only: %v\n--- envoy output (tail) ---\n%s\n", err, eo.out.tail(8<<10))
		return 1
	}
	defer eo.stop()
	logf("envoy-only on %s", eo.url)
	var otlp string
	if o.collector != "none" {
		rcv, err := otlptest.Start()
		if err != nil {
			fmt.Fprintln(stderr, "bench: collector:", err)
			return 1
		}
		defer rcv.Close()
		if o.collector == "down" {
			rcv.SetBehaviour(otlptest.Hang)
		}
		otlp = rcv.HTTPURL()
		logf("collector %s on %s", o.collector, otlp)
	}
	sl, err := startSluice(ctx, o.sluiceBin, o.envoyBin, fk.addr, o.envoyConc, otlp)
	if err != nil {
		fmt.Fprintf(stderr, "bench: sluice: %v\n--- sluice output (tail) ---\n%s\n", err, sl.out.tail(8<<10))
		return 1
	}
	defer sl.stop()
	logf("sluice on %s", sl.url)
	childTails := func() {
		fmt.Fprintf(stderr, "--- envoy-only output (tail) ---\n%s\n--- sluice output (tail) ---\n%s\n",
			eo.out.tail(8<<10), sl.out.tail(8<<10))
	}

	const path = "/v1/chat/completions"
	const bearer = "Bearer "
	targets := []target{
		{name: "direct", base: "direct", url: "http://" + fk.addr + path, auth: bearer + providerCredential},
		{name: "envoy-only", base: "direct", url: eo.url + path, auth: bearer + providerCredential},
		{name: "sluice", base: "direct", url: sl.url + path, auth: bearer + sl.secret, admin: sl.admin},
		{name: "sluice-guarded", base: "direct", url: sl.url + path, auth: bearer + sl.guarded, admin: sl.admin},
		{name: "sluice-governed", base: "direct", url: sl.url + path, auth: bearer + sl.governed, admin: sl.admin},
	}
	if o.stream {
		for _, t := range targets[:5] {
			t.name, t.base, t.stream = t.name+"-stream", "direct-stream", true
			targets = append(targets, t)
		}
	}
	var levels []level
	if o.c1n > 0 {
		levels = append(levels, level{1, o.c1n})
	}
	levels = append(levels, level{o.c, o.n})

	type cellKey struct {
		path string
		conc int
	}
	cells := map[cellKey]*stats{}
	var order []*stats
	var benchLines []string
	procs := runtime.GOMAXPROCS(0)
	for _, lv := range levels {
		for rep := range o.count {
			for _, t := range targets {
				if sl.exited() || eo.exited() {
					fmt.Fprintf(stderr, "bench: ERROR: a gateway child exited during the run (envoy-only exited: %v, sluice exited: %v)\n",
						eo.exited(), sl.exited())
					childTails()
					return 1
				}
				client := newClient(lv.conc)
				if o.warmup > 0 {
					w, err := load(ctx, client, t, o.warmup, lv.conc)
					if err == nil && w.errors > 0 {
						err = fmt.Errorf("%d of %d warm-up requests failed; first: %s", w.errors, o.warmup, w.firstErr)
					}
					if err != nil {
						fmt.Fprintf(stderr, "bench: ERROR warming up %s c%d: %v\n", t.name, lv.conc, err)
						childTails()
						return 1
					}
				}
				msgs0, msgErr := int64(0), error(nil)
				if t.admin != "" {
					msgs0, msgErr = extProcMessages(ctx, t.admin)
				}
				r, err := load(ctx, client, t, lv.n, lv.conc)
				client.CloseIdleConnections()
				msgs := int64(-1)
				if t.admin != "" && msgErr == nil {
					var msgs1 int64
					if msgs1, msgErr = extProcMessages(ctx, t.admin); msgErr == nil {
						msgs = msgs1 - msgs0
					}
				}
				if msgErr != nil {
					err = errors.Join(err, fmt.Errorf("%s: reading ext_proc counters: %w", t.name, msgErr))
				}
				if err != nil {
					fmt.Fprintf(stderr, "bench: ERROR %v\n", err)
					childTails()
					return 1
				}
				k := cellKey{t.name, lv.conc}
				st := cells[k]
				if st == nil {
					st = &stats{path: t.name, base: t.base, conc: lv.conc}
					if t.admin == "" {
						st.extProc = -1
					}
					cells[k] = st
					order = append(order, st)
				}
				st.add(r)
				if msgs >= 0 {
					st.extProc += msgs
				}
				logf("%-17s c%-3d run %d/%d: %d requests in %v, %d errors", t.name, lv.conc, rep+1, o.count,
					len(r.lat), r.elapsed.Round(time.Millisecond), r.errors)
				if r.errors > 0 {
					fmt.Fprintf(stderr, "bench: ERROR: %s c%d: %d of %d requests FAILED; first: %s\n",
						t.name, lv.conc, r.errors, len(r.lat), r.firstErr)
				}
				if o.benchfmt && len(r.lat) > 0 {
					benchLines = append(benchLines, fmt.Sprintf("BenchmarkPath/%s/c%d-%d\t%d\t%d ns/op\t%.0f req/s\t%d p50-ns\t%d p99-ns",
						t.name, lv.conc, procs, len(r.lat), r.elapsed.Nanoseconds()/int64(len(r.lat)),
						float64(len(r.lat))/r.elapsed.Seconds(), percentile(r.lat, 50), percentile(r.lat, 99)))
				}
			}
		}
	}
	for _, st := range order {
		st.finish()
	}

	facts := machineFacts(o, envoyVer)
	report(stdout, facts, order, func(base string, conc int) *stats { return cells[cellKey{base, conc}] })
	if o.envoyStats {
		fmt.Fprintln(stdout, "\nEnvoys' own view (ms, cumulative over every cell and warm-up; default buckets 0.5, 1, 5 ms …, so sub-ms values are coarse):")
		for _, e := range []struct{ name, admin string }{{"envoy-only", eo.admin}, {"sluice", sl.admin}} {
			for _, l := range envoyTimes(ctx, e.admin) {
				fmt.Fprintf(stdout, "- %s: %s\n", e.name, l)
			}
		}
	}
	if o.benchfmt {
		fmt.Fprintf(stdout, "\ngoos: %s\ngoarch: %s\npkg: github.com/sluice-gateway/sluice/test/bench\ncpu: %s\n",
			runtime.GOOS, runtime.GOARCH, cpuModel())
		for _, l := range benchLines {
			fmt.Fprintln(stdout, l)
		}
	}
	var failed int64
	for _, st := range order {
		// A key without response guardrails must cost Envoy exactly two ext_proc messages
		// (request headers and body): the response phases stay skipped.
		if (st.path == "sluice" || st.path == "sluice-stream" || strings.HasPrefix(st.path, "sluice-governed")) && st.extProc != 2*int64(len(st.lat)) {
			fmt.Fprintf(stderr, "\nbench: ERROR: %s at concurrency %d: %d ext_proc messages for %d requests, want 2 per request\n",
				st.path, st.conc, st.extProc, len(st.lat))
			failed++
		}
		if st.errors > 0 {
			failed += st.errors
			fmt.Fprintf(stderr, "\nbench: ERROR: %s at concurrency %d: %d of %d requests FAILED; first: %s\n",
				st.path, st.conc, st.errors, len(st.lat), st.firstErr)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "\n**ERROR: %d requests failed; these numbers are not valid.**\n", failed)
		childTails()
		return 1
	}
	logf("done")
	return 0
}

// facts are the lines printed above the table.
type facts []string

func machineFacts(o options, envoyVer string) facts {
	return facts{
		fmt.Sprintf("command: `%s`", commandLine(o.args)),
		fmt.Sprintf("machine: %d CPUs usable (nproc), GOMAXPROCS %d, %s, %s/%s, CPU %s",
			runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, cpuModel()),
		fmt.Sprintf("envoy: %s (`%s`), --concurrency %d for both Envoys", envoyVer, o.envoyBin, o.envoyConc),
		fmt.Sprintf("load generator: Go net/http, HTTP/1.1, keep-alive pool = concurrency, %d warm-up requests per cell, "+
			"%d repeat(s) pooled per cell; latency = request sent → last body byte", o.warmup, o.count),
		fmt.Sprintf("SAME MACHINE: the load generator and the fake provider (this process), both Envoys and sluice "+
			"all share these %d CPUs; the client competes with the gateway, so absolute numbers are pessimistic — "+
			"compare the \"added\" columns", runtime.NumCPU()),
		fmt.Sprintf("workload: POST /v1/chat/completions, %d-byte body (model %s), fake provider in-process with zero delay",
			len(bodyPlain), benchModel),
		fmt.Sprintf("sluice's OTLP collector: %s", o.collector),
	}
}

// commandLine is the exact invocation, shell-quoted.
func commandLine(args []string) string {
	parts := []string{"go run ./test/bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func report(w io.Writer, f facts, order []*stats, cell func(base string, conc int) *stats) {
	fmt.Fprintln(w, "## Sluice benchmark")
	fmt.Fprintln(w)
	for _, l := range f {
		fmt.Fprintln(w, "- "+l)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path                   | conc | requests | rps     | p50      | p99      | added p50 | added p99 | ext_proc msgs/req |")
	fmt.Fprintln(w, "|------------------------|------|----------|---------|----------|----------|-----------|-----------|-------------------|")
	for _, st := range order {
		p50, p99 := pct(st.lat, 50), pct(st.lat, 99)
		a50, a99 := "–", "–"
		if b := cell(st.base, st.conc); b != nil && b != st {
			a50, a99 = fmtDur(p50-pct(b.lat, 50)), fmtDur(p99-pct(b.lat, 99))
		}
		fmt.Fprintf(w, "| %-22s | %-4d | %-8d | %-7.0f | %-8s | %-8s | %-9s | %-9s | %-17s |\n",
			st.path, st.conc, len(st.lat), st.rps(), fmtDur(p50), fmtDur(p99), a50, a99, st.msgsPerRequest())
	}
}

// fmtDur prints whole microseconds below a millisecond, else milliseconds with 2 decimals.
func fmtDur(d time.Duration) string {
	abs := d
	if abs < 0 {
		abs = -abs
	}
	if abs < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Round(time.Microsecond).Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
