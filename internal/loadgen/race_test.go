//go:build race

package loadgen

// raceEnabled: the race detector slows the engine several times over, so
// timing expectations loosen.
const raceEnabled = true
