package mainlib

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/breaker"
	"github.com/sluice-gateway/sluice/internal/counters"
)

// counterFlags choose where budget spend and rate-limit windows live.
type counterFlags struct {
	failureMode string
}

func (c *counterFlags) register(fs *flag.FlagSet) {
	mode := os.Getenv("SLUICE_COUNTER_FAILURE_MODE")
	if mode == "" {
		mode = "closed"
	}
	fs.StringVar(&c.failureMode, "counter-failure-mode", mode,
		"when the counter store (budgets, rate limits) cannot answer: closed refuses requests under a budget or limit with 503; open admits them unchecked")
}

func (c *counterFlags) failOpen() (bool, error) {
	switch c.failureMode {
	case "closed":
		return false, nil
	case "open":
		return true, nil
	}
	return false, fmt.Errorf("--counter-failure-mode %q: want closed or open", c.failureMode)
}

// counterOptions: a hold the dispatcher never settles (the request never reached it, or it
// crashed) stops counting after HoldTTL; a settled request id is remembered long enough to
// make any repeated settle a no-op, and no longer (each costs memory and journal space).
var counterOptions = counters.Options{HoldTTL: 15 * time.Minute, SettledTTL: 2 * time.Hour}

// openCounters opens the counter store: Redis when redisURL is set (a fleet: every replica
// counts in one place), else the in-process store persisted in stateDir (nothing when
// stateDir is empty too). It closes with g.
func openCounters(g *group, logger *slog.Logger, redisURL, stateDir string) (counters.Store, error) {
	var st counters.Store
	var err error
	opts := counterOptions
	opts.Logger = logger.With("component", "counters")
	switch {
	case redisURL != "":
		st, err = counters.OpenRedis(redisURL, opts)
	case stateDir != "":
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return nil, err
		}
		st, err = counters.OpenMemory(filepath.Join(stateDir, "counters.journal"), opts)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("counter store: %w", err)
	}
	g.onStop(func() {
		if err := st.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			logger.Warn("closing the counter store", "err", err)
		}
	})
	return st, nil
}

// breakerFlags tune the dispatcher's per-provider circuit breakers.
type breakerFlags struct {
	threshold        int
	window, cooldown time.Duration
}

func (b *breakerFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&b.threshold, "breaker-threshold", 5, "provider failures (5xx, timeouts, network errors) within --breaker-window that open its circuit")
	fs.DurationVar(&b.window, "breaker-window", 30*time.Second, "the window provider failures are counted over")
	fs.DurationVar(&b.cooldown, "breaker-cooldown", 30*time.Second, "how long an open circuit skips its provider before one probe may try it")
}

func (b *breakerFlags) config() breaker.Config {
	return breaker.Config{Threshold: b.threshold, Window: b.window, Cooldown: b.cooldown}
}
