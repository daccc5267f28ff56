//go:build race

package transport

// The race detector allocates on its own account.
const raceEnabled = true
