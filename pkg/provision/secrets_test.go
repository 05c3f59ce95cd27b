package provision

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// TestSecretsAreBatched lets agents arrive while the batcher is busy:
// they wait, and go together, at most maxBatch to a Secret, which every
// pod reading it owns.
func TestSecretsAreBatched(t *testing.T) {
	cs := newFakeKube()
	p, err := New(Config{Jenkins: &jenkins.Client{}, Kube: cs, Namespace: testNS, Templates: testTemplate(nil), JenkinsURL: "http://j/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = maxBatch + 6
	// As if maxFlushes batches were being made.
	p.batch.mu.Lock()
	p.batch.flushing = maxFlushes
	p.batch.mu.Unlock()
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		name := eci.AgentName(int64(i), 1)
		r := &podReq{agent: eci.Agent{Name: name, Namespace: testNS, QueueID: int64(i), Attempt: 1, JenkinsURL: "http://j/"},
			template: "linux", secret: "secret-of-" + name}
		go func() { errs <- p.batch.submit(ctx, r) }()
	}
	waitFor(t, "every agent to wait", func() bool {
		p.batch.mu.Lock()
		defer p.batch.mu.Unlock()
		return len(p.batch.pending) == n
	})
	p.batch.mu.Lock()
	p.batch.flushing = 0
	p.batch.mu.Unlock()
	p.batch.start(ctx)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("submit did not return")
		}
	}

	secrets, _ := cs.CoreV1().Secrets(testNS).List(ctx, metav1.ListOptions{})
	pods, _ := cs.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != n {
		t.Fatalf("%d pods, want %d", len(pods.Items), n)
	}
	var sizes []int
	byName := map[string]corev1.Secret{}
	for _, s := range secrets.Items {
		sizes = append(sizes, len(s.Data))
		byName[s.Name] = s
	}
	slices.Sort(sizes)
	if want := fmt.Sprint([]int{n - maxBatch, maxBatch}); fmt.Sprint(sizes) != want {
		t.Errorf("Secrets hold %v agents each, want %s", sizes, want)
	}
	readers := map[string][]string{}
	for _, pod := range pods.Items {
		s, ok := byName[eci.SecretNameOf(&pod)]
		if !ok {
			t.Errorf("pod %s reads Secret %q, which does not exist", pod.Name, eci.SecretNameOf(&pod))
			continue
		}
		if got := string(s.Data[pod.Name]); got != "secret-of-"+pod.Name {
			t.Errorf("pod %s's key holds %q, want its node's secret", pod.Name, got)
		}
		readers[s.Name] = append(readers[s.Name], string(pod.UID))
	}
	for name, uids := range readers {
		var owners []string
		for _, r := range byName[name].OwnerReferences {
			owners = append(owners, string(r.UID))
		}
		slices.Sort(uids)
		slices.Sort(owners)
		if !slices.Equal(uids, owners) {
			t.Errorf("Secret %s is owned by %v, want the pods reading it %v", name, owners, uids)
		}
	}
}

// TestSwapIsCountedOnce: an item whose agent ran another item's build gets
// a new attempt under a new name, counted once against nothing however
// often making it has to be tried again (here: its node never appears).
func TestSwapIsCountedOnce(t *testing.T) {
	p, err := New(Config{Jenkins: &jenkins.Client{}, Kube: newFakeKube(), Namespace: testNS, Templates: testTemplate(nil), JenkinsURL: "http://j/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	item := jenkins.QueueItem{ID: 5, TaskName: "app", Buildable: true, Why: "Waiting for next available executor on ‘" + testLabel + "’"}
	spent := jenkins.Computer{Name: eci.AgentName(5, 1), Labels: []string{testLabel}, TemporarilyOffline: true, OfflineReason: OneBuildReason}
	creates := func(pl *decision) []string {
		var keys []string
		for _, a := range pl.acts {
			if a.lane() == laneCreate {
				keys = append(keys, a.key())
			}
		}
		return keys
	}
	now := time.Now()
	for i, comps := range [][]jenkins.Computer{{spent}, nil, nil} {
		pl := p.plan(ctx, now, comps, []jenkins.QueueItem{item}, nil, nil)
		if got, want := creates(pl), []string{createKey(eci.AgentName(5, 2))}; !slices.Equal(got, want) {
			t.Fatalf("cycle %d creates %v, want %v", i+1, got, want)
		}
		now = now.Add(time.Second)
	}
	if got := p.mem.items[5].swapped; got != 1 {
		t.Errorf("swapped = %d after three cycles planning the same attempt, want 1", got)
	}
}
