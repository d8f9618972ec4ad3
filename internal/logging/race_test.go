//go:build race

package logging

// raceEnabled: under the race detector sync.Pool drops items at random, so slog's buffer
// pool makes allocation counts unreliable.
const raceEnabled = true
