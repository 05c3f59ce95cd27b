package chaos_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/testbed"
)

// TestAPIServerRestartOnTheBed points three ferry processes at a
// kube-apiserver of the test's own (sharing the bed's etcd, so the bed's
// scheduler and kwok play the pods; the shared bed's API server is never
// touched), SIGKILLs it mid-burst and starts it again on the same port.
// The provisioner's leader loses its Lease renewals and steps down; once
// the server is back a replica takes the Lease and provisions the rest.
// Every accepted delivery must become one build, nothing may leak, and no
// replica may act outside its term.
func TestAPIServerRestartOnTheBed(t *testing.T) {
	if testing.Short() {
		t.Skip("API-server restart on the bed: skipped under -short (it builds ferry and runs a kube-apiserver against the test bed's etcd)")
	}
	if os.Getenv("FERRY_CHAOS") != "full" {
		t.Skip("API-server restart: runs in make chaos only (FERRY_CHAOS=full): it starts a second kube-apiserver, too heavy for make test's bounded run")
	}
	env := testbed.Kube(t)
	api := chaos.StartAPIServer(t, chaos.BedSettings{
		ToolsBin: env.Get("TESTBED_TOOLS_BIN"), Dir: env.Get("TESTBED_DIR"),
		Etcd: env.Get("ETCD_ENDPOINT"), FerryKubeconfig: env.Get(testbed.KeyKubeconfigFerry),
	})
	b := startHABedOn(t, api.Kubeconfig())
	waitFor(t, "a provisioner leader", time.Minute, func() bool { return b.leader(context.Background()) != nil })
	n := burst()
	sent := b.sendBurst(n)
	waitFor(t, "agent pods being created for the burst", 2*time.Minute, func() bool { return b.agentPods() >= 5 })
	killed := time.Now()
	if err := api.Kill(); err != nil {
		t.Fatal(err)
	}
	// Down for longer than the lease: every replica's renewals fail.
	time.Sleep(haLeaseFor)
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	// Work resumed: a replica renewed the Lease through the restarted
	// server.
	waitFor(t, "the provisioner's Lease renewed after the restart", 2*time.Minute, func() bool {
		l, err := b.cs.CoordinationV1().Leases(b.ns).Get(context.Background(), haLease, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(up) && b.leader(context.Background()) != nil
	})
	resumed := time.Since(killed)
	<-sent
	b.settle(t, "apiserver-restart", resumed, fmt.Sprintf("down=%s", up.Sub(killed).Round(100*time.Millisecond)))
	// No build is lost when only the API server goes: a re-run means an
	// agent whose build ran was taken for dead.
	if b.prev.Reruns > 0 {
		t.Errorf("%d builds were re-run after the API server's restart, want 0: no build was lost", b.prev.Reruns)
	}
}
