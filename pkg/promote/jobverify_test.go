package promote_test

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/testbed"
)

// smokeJob is a verification Job template whose pod runs on the virtual
// nodes; the bed completes it, or fails it when complete is "failed".
func smokeJob(complete string) *batchv1.JobSpec {
	ann := map[string]string{testbed.StartDelayAnnotation: "200ms"}
	if complete != "" {
		ann[testbed.CompleteAnnotation] = complete
	}
	return &batchv1.JobSpec{
		BackoffLimit: ptr(int32(0)),
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: ann},
			Spec: corev1.PodSpec{
				NodeSelector: testbed.VirtualNodeSelector(),
				Tolerations:  []corev1.Toleration{testbed.VirtualNodeToleration()},
				Containers:   []corev1.Container{{Name: "smoke", Image: "registry.example/smoke:1"}},
			},
		},
	}
}

// Test is verified by a Job alone: a Job the bed completes lets the
// promotion on to production's gate; a Job the bed fails rolls test back
// and fails the promotion naming the Job. Production is never touched.
func TestJobVerification(t *testing.T) {
	for _, tc := range []struct {
		name     string
		complete string // the Job pod's testbed.ferry.dev/complete
		pass     bool
	}{
		{name: "completed job passes", complete: "", pass: true},
		{name: "failed job rolls back", complete: testbed.CompleteFailed, pass: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, memStore(t))
			b.app.Environments[0].Verify = config.Verification{Job: config.JobCheck{
				Template: smokeJob(tc.complete), Timeout: config.Duration{Duration: 2 * time.Minute},
			}}
			digest := push(t, b.source+":job", image(t, layers(t, 1, 1024)...))
			b.deploy(b.nsTest, nil)
			b.deploy(b.nsProd, nil)
			prodGen := b.deployment(b.nsProd).Generation
			ctx := context.Background()
			seen := watchJobs(t, b, b.nsTest)
			b.start()

			p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":job", Commit: commit})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			want := b.target + "@" + digest.String()
			p = b.waitFor(p.ID, "waiting or finished", func(p store.Promotion) bool {
				return p.State == store.PromotionWaiting || p.Finished()
			})

			// The Job is deleted once its result is recorded.
			waitNoJobs(t, b, b.nsTest)
			jobs := seen()
			if len(jobs) != 1 {
				t.Fatalf("%d verification jobs were created in test, want 1", len(jobs))
			}
			var job batchv1.Job
			for _, j := range jobs {
				job = j
			}
			if got := actions(p, "verification job deleted", "test"); got != 1 {
				t.Errorf("audit has %d verification job deletions for test, want 1: %+v", got, p.Audit)
			}
			if job.Labels["app.kubernetes.io/managed-by"] != "ferry" {
				t.Errorf("job %s labels = %v, want managed-by ferry", job.Name, job.Labels)
			}
			env := map[string]string{}
			for _, e := range job.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			if env["FERRY_DIGEST"] != digest.String() || env["FERRY_IMAGE"] != want || env["FERRY_ENVIRONMENT"] != "test" || env["FERRY_PROMOTION"] != p.ID {
				t.Errorf("job env = %v, want the digest, image, environment and promotion", env)
			}
			if prod := p.Environments[1]; prod.Phase != store.EnvPending && prod.Phase != store.EnvAwaitingApprove {
				t.Errorf("production phase = %s, want untouched", prod.Phase)
			}
			if d := b.deployment(b.nsProd); d.Generation != prodGen || d.Spec.Template.Spec.Containers[0].Image != oldImage {
				t.Errorf("production touched: generation %d -> %d, image %s", prodGen, d.Generation, d.Spec.Template.Spec.Containers[0].Image)
			}

			if tc.pass {
				if p.State != store.PromotionWaiting || p.Environments[0].Phase != store.EnvSucceeded {
					t.Fatalf("promotion %s, test %s (reason %q); want waiting for production with test succeeded",
						p.State, p.Environments[0].Phase, p.Reason)
				}
				if !jobCondition(job, batchv1.JobComplete) {
					t.Errorf("job %s conditions = %+v, want Complete", job.Name, job.Status.Conditions)
				}
				if actions(p, "verified", "test") != 1 {
					t.Errorf("audit = %+v, want test verified once", p.Audit)
				}
				b.waitDeployment(b.nsTest, want)
				return
			}
			if p.State != store.PromotionFailed || p.Environments[0].Phase != store.EnvRolledBack {
				t.Fatalf("promotion %s, test %s; want failed with test rolled back", p.State, p.Environments[0].Phase)
			}
			if !strings.HasPrefix(p.Reason, "test: ") || !strings.Contains(p.Reason, job.Name) {
				t.Errorf("reason = %q, want it to name test and job %s", p.Reason, job.Name)
			}
			if !jobCondition(job, batchv1.JobFailed) {
				t.Errorf("job %s conditions = %+v, want Failed", job.Name, job.Status.Conditions)
			}
			if actions(p, "rolled out", "test") != 1 || actions(p, "rolled back", "test") != 1 || actions(p, "verified", "test") != 0 {
				t.Errorf("audit = %+v, want one rollout and one rollback of test, no verification", p.Audit)
			}
			b.waitDeployment(b.nsTest, oldImage)
		})
	}
}

func jobCondition(j batchv1.Job, ct batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == ct && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// watchJobs records the last state seen of each Job created in ns from
// now on, deleted ones included; the returned function reports them by
// name.
func watchJobs(t *testing.T, b *bed, ns string) func() map[string]batchv1.Job {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.admin.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("watch jobs in %s: %v", ns, err)
	}
	var mu sync.Mutex
	last := map[string]batchv1.Job{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok {
				mu.Lock()
				last[j.Name] = *j
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return func() map[string]batchv1.Job {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(last)
	}
}

// waitNoJobs waits for ns to hold no Jobs.
func waitNoJobs(t *testing.T, b *bed, ns string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		jobs, err := b.admin.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil && len(jobs.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			if err == nil {
				for _, j := range jobs.Items {
					names = append(names, j.Name)
				}
			}
			t.Fatalf("jobs in %s after a minute: %v (list error %v), want none: verification jobs are deleted once recorded", ns, names, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
