package jenkins_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// Cores before 2.308 answer a merge 201 like a creation: the client's
// memory of its own triggers tells it apart.
func TestEmulatorMergeOnOldCore(t *testing.T) {
	srv := jenkinsemu.New(jenkinsemu.Options{Version: "2.307", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(srv.Close)
	if err := srv.AddJob("app", jenkinsemu.JobSpec{Label: emuLabel, Params: ferryParams}); err != nil {
		t.Fatal(err)
	}
	c := emuClient(t, srv, nil)
	ctx := context.Background()
	params := map[string]string{"SHA": "abc", "FERRY_ID": "ev-1"}
	first, err := c.Trigger(ctx, "app", params)
	if err != nil || first.Merged {
		t.Fatalf("Trigger = %+v, %v", first, err)
	}
	again, err := c.Trigger(ctx, "app", params)
	if err != nil || again != (jenkins.TriggerResult{QueueID: first.QueueID, Merged: true}) {
		t.Fatalf("second Trigger = %+v, %v; want merged into %d", again, err, first.QueueID)
	}
	if n := srv.Calls()[jenkinsemu.RouteBuildWithParameters]; n != 2 {
		t.Errorf("%d triggers reached the emulator, want 2", n)
	}
}

// TestEmulatorTriggerRefusals triggers a disabled job and a job without
// parameters on a core before 2.524 (its 500 Oops page names no exception)
// and on one since: each is a permanent refusal saying why, never
// "Jenkins unavailable".
func TestEmulatorTriggerRefusals(t *testing.T) {
	for _, version := range []string{"2.462.3", "2.524"} {
		t.Run(version, func(t *testing.T) {
			srv := jenkinsemu.New(jenkinsemu.Options{Version: version, Logger: slog.New(slog.DiscardHandler)})
			t.Cleanup(srv.Close)
			for path, spec := range map[string]jenkinsemu.JobSpec{
				"team/off": {Label: emuLabel, Params: ferryParams, Disabled: true},
				"plain":    {Label: emuLabel},
			} {
				if err := srv.AddJob(path, spec); err != nil {
					t.Fatal(err)
				}
			}
			c := emuClient(t, srv, nil)
			ctx := context.Background()
			params := map[string]string{"SHA": "abc", "FERRY_ID": "ev-1"}

			_, err := c.Trigger(ctx, "team/off", params)
			if !errors.Is(err, jenkins.ErrDisabled) || !errors.Is(err, jenkins.ErrRefused) || jenkins.IsRetryable(err) {
				t.Errorf("Trigger of a disabled job: err = %v, want ErrDisabled (a refusal)", err)
			}
			_, err = c.Trigger(ctx, "plain", params)
			if !errors.Is(err, jenkins.ErrNotParameterized) || !errors.Is(err, jenkins.ErrRefused) || jenkins.IsRetryable(err) {
				t.Errorf("Trigger of a job without parameters: err = %v, want ErrNotParameterized (a refusal)", err)
			}
			missing, err := c.MissingParams(ctx, "plain", []string{"SHA", "FERRY_ID"})
			if err != nil || len(missing) != 2 {
				t.Errorf("MissingParams(plain) = %v, %v; want both", missing, err)
			}
			if n := len(srv.QueueItems()); n != 0 {
				t.Errorf("%d items queued by refused triggers", n)
			}
		})
	}
}
