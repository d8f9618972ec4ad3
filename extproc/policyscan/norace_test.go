//go:build !race

package policyscan

const raceEnabled = false
