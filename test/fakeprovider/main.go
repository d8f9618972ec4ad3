// Command fakeprovider runs the scriptable fake LLM provider (internal/fakeprovider) on its
// own, for SDK driver development and manual testing:
//
//	go run ./test/fakeprovider -addr 127.0.0.1:9999 -openai-key sk-fake -anthropic-key sk-ant-fake
//
// It prints "listening on ADDR" once the listener is open, then serves until interrupted.
// -script MARKER=JSON (repeatable) registers a fakeprovider.Script for requests whose body
// contains MARKER, e.g. -script 'slow={"FirstByteDelay":2000000000}' (durations in ns) or
// -script 'cut={"CutAfterEvents":3}'.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	openaiKey := flag.String("openai-key", "", "expected OpenAI key (empty accepts any)")
	anthropicKey := flag.String("anthropic-key", "", "expected Anthropic key (empty accepts any)")
	verbose := flag.Bool("v", false, "log every request to stderr")
	var scripts []string
	flag.Func("script", "MARKER=JSON of a fakeprovider.Script (repeatable)", func(v string) error {
		scripts = append(scripts, v)
		return nil
	})
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fake := fakeprovider.New(fakeprovider.Config{OpenAIKey: *openaiKey,
		AnthropicKey: *anthropicKey, Logger: log, MaxRecorded: -1})

	for _, v := range scripts {
		marker, js, ok := strings.Cut(v, "=")
		var sc fakeprovider.Script
		if err := json.Unmarshal([]byte(js), &sc); !ok || marker == "" || err != nil {
			fmt.Fprintf(os.Stderr, "fakeprovider: bad -script %q: want MARKER=JSON (%v)\n", v, err)
			os.Exit(2)
		}
		fake.Script(marker, sc)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
}
