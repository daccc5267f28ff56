package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/state"
)

// persistInterval bounds how stale the records of a crashed daemon can be
// beyond what the reservations cover.
const persistInterval = 500 * time.Millisecond

// counterRefresh is how often records are rewritten only to refresh the
// Child SAs' sequence numbers.
const counterRefresh = 10 * time.Second

// restore brings back the SAs of the previous run, if any. A state file
// that was not written by an orderly shutdown may be older than the last
// exchange: its SAs are resynchronised (RFC 6311) before they send.
func (d *Daemon) restore() error {
	st := d.cfg.State
	if st == nil {
		return nil
	}
	f, err := state.Load(st.Path, st.Key.Bytes())
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	n, err := d.engine.Restore(f.Records, ike.RestoreOptions{Stale: !f.Clean})
	d.log.Info("state restored", "file", st.Path, "sas", n, "of", len(f.Records), "clean", f.Clean,
		"age", time.Since(f.Saved).Round(time.Millisecond))
	if err != nil {
		d.log.Warn("some SAs could not be restored", "err", err)
	}
	// From now on the file on disk describes a running daemon.
	return d.save(false)
}

func (d *Daemon) save(clean bool) error {
	st := d.cfg.State
	return state.Save(st.Path, st.Key.Bytes(), &state.File{Clean: clean, Saved: time.Now(), Records: d.engine.Records()})
}

// persist writes the records whenever the engine says they changed.
func (d *Daemon) persist(ctx context.Context) {
	if d.cfg.State == nil {
		return
	}
	t := time.NewTicker(persistInterval)
	defer t.Stop()
	refresh := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// ESP counters move without making the records dirty; refresh
			// them often enough that a restart can estimate how far they
			// went since (ike's maxEstimateAge).
			stale := now.Sub(refresh) >= counterRefresh && d.engine.Stats().Established.Load() > 0
			if d.engine.Dirty() || stale {
				refresh = now
				if err := d.save(false); err != nil {
					d.log.Error("cannot save state", "file", d.cfg.State.Path, "err", err)
				}
			}
		}
	}
}
