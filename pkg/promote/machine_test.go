package promote_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// The promotion machine, driven with fakes: a registry and HTTP checks
// with function fields, client-go's fake clientset whose Deployments show
// the status a function decides, the memory store and a fixed clock. A
// snapshot goes in, the next record comes out.

const (
	srcRepo   = "registry.example/ci/web"
	dstRepo   = "registry.example/release/web"
	theDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	theTarget = dstRepo + "@" + theDigest
	v0        = dstRepo + ":v0" // what the environments run before
	nsTest    = "web-test"
	nsProd    = "web-prod"
)

var t0 = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

// images is a fake registry.
type images struct {
	resolve func(ref name.Reference) (name.Digest, error)
	copy    func(src name.Digest, dst name.Repository, tags []string) (name.Digest, error)
	copies  []string // the tags of every copy
}

func (i *images) Resolve(_ context.Context, ref name.Reference) (name.Digest, error) {
	if i.resolve != nil {
		return i.resolve(ref)
	}
	return ref.Context().Digest(theDigest), nil
}

func (i *images) Copy(_ context.Context, src name.Digest, dst name.Repository, tags []string) (name.Digest, error) {
	i.copies = append(i.copies, strings.Join(tags, ","))
	if i.copy != nil {
		return i.copy(src, dst, tags)
	}
	return dst.Digest(src.DigestStr()), nil
}

// healthy is the status of a Deployment whose rollout is done.
func healthy(d *appsv1.Deployment) appsv1.DeploymentStatus {
	return appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
}

// stuck is the status of a rollout past its progress deadline.
func stuck(d *appsv1.Deployment) appsv1.DeploymentStatus {
	st := healthy(d)
	st.UpdatedReplicas, st.Replicas = 0, 2
	st.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "timed out"}}
	return st
}

// updating is the status of a rollout that goes on and on.
func updating(d *appsv1.Deployment) appsv1.DeploymentStatus {
	st := healthy(d)
	st.UpdatedReplicas, st.Replicas = 0, 2
	return st
}

// machine is a promoter of app web (test, then production behind an
// approval) over fakes.
type machine struct {
	now     time.Time
	app     config.PromotionApp
	images  *images
	kube    *fake.Clientset
	rollout func(d *appsv1.Deployment) appsv1.DeploymentStatus
	// job is how a verification Job ends ("" while it runs).
	job     batchv1.JobConditionType
	health  map[string]int // HTTP check answer per host
	updates map[string]int // Deployment updates per namespace
	store   store.Store
	p       *promote.Promoter
}

func newMachine(t *testing.T, setup func(*machine)) *machine {
	t.Helper()
	check := func(host string) config.Verification {
		return config.Verification{HTTP: config.HTTPCheck{
			URL: "http://" + host + "/healthz", Successes: 2, FailureThreshold: 2,
			Interval: config.Duration{Duration: time.Millisecond}, Timeout: config.Duration{Duration: 10 * time.Second},
		}}
	}
	m := &machine{
		now: t0.Add(time.Hour),
		app: config.PromotionApp{Name: "web", Source: srcRepo, Target: dstRepo, Environments: []config.PromotionEnvironment{
			{Name: "test", Namespace: nsTest, Deployments: []string{"web"}, RolloutTimeout: config.Duration{Duration: 10 * time.Second}, Verify: check("test.web")},
			{Name: "production", Namespace: nsProd, Deployments: []string{"web"}, Approval: true, RolloutTimeout: config.Duration{Duration: 10 * time.Second}, Verify: check("prod.web")},
		}},
		images:  &images{},
		rollout: healthy,
		job:     batchv1.JobComplete,
		health:  map[string]int{"test.web": http.StatusOK, "prod.web": http.StatusOK},
		updates: map[string]int{},
		store:   memStore(t),
	}
	m.kube = fake.NewClientset(deployment(nsTest, v0), deployment(nsProd, v0))
	m.kube.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		obj, err := m.kube.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), g.GetNamespace(), g.GetName())
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment)
		d.Status = m.rollout(d)
		return true, d, nil
	})
	m.kube.PrependReactor("get", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		obj, err := m.kube.Tracker().Get(batchv1.SchemeGroupVersion.WithResource("jobs"), g.GetNamespace(), g.GetName())
		if err != nil {
			return true, nil, err
		}
		j := obj.(*batchv1.Job)
		if m.job != "" {
			j.Status.Conditions = []batchv1.JobCondition{{Type: m.job, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}}
		}
		return true, j, nil
	})
	m.kube.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		m.updates[a.GetNamespace()]++
		return false, nil, nil
	})
	if setup != nil {
		setup(m)
	}
	p, err := promote.New(promote.Config{
		Store: m.store, Apps: []config.PromotionApp{m.app}, Registry: m.images,
		Kube:       func(string) (kubernetes.Interface, error) { return m.kube, nil },
		HTTPClient: &http.Client{Transport: roundTrip(func(r *http.Request) int { return m.health[r.URL.Host] })},
		Poll:       time.Millisecond, Resync: 10 * time.Millisecond,
		Now: func() time.Time { return m.now },
	})
	if err != nil {
		t.Fatalf("promote.New: %v", err)
	}
	m.p = p
	return m
}

func deployment(ns, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Generation: 1},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: image}, {Name: "proxy", Image: "registry.example/proxy:1"}},
		}}},
	}
}

// runs is the image the web container of ns runs.
func (m *machine) runs(t *testing.T, ns string) string {
	t.Helper()
	d, err := m.kube.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// set makes ns's web container run image, as a rollout before a restart
// would have left it.
func (m *machine) set(ns, image string) {
	obj, _ := m.kube.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), ns, "web")
	d := obj.(*appsv1.Deployment)
	d.Spec.Template.Spec.Containers[0].Image = image
	_ = m.kube.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), d, ns)
}

type roundTrip func(*http.Request) int

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) {
	code := f(r)
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// previous is what an environment ran before the promotion, as recorded.
func previous(ns string) []store.DeploymentImage {
	return []store.DeploymentImage{{Namespace: ns, Deployment: "web", Container: "web", Image: v0}}
}

// promotion is web's promotion of theDigest, copied to theTarget, with
// test and production pending; edits change it.
func promotion(edits ...func(*store.Promotion)) store.Promotion {
	p := store.Promotion{
		ID: "20260314-150000-0000abcd", Kind: store.KindPromote, App: "web", Source: srcRepo + ":build-7",
		SourceDigest: theDigest, Target: theTarget, Tags: []string{"1.4.0"}, State: store.PromotionRunning,
		CreatedAt: t0, UpdatedAt: t0,
		Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvPending}, {Name: "production", Phase: store.EnvPending, NeedsApproval: true}},
	}
	for _, e := range edits {
		e(&p)
	}
	return p
}

// at puts environment i in phase with what reaching it recorded.
func at(i int, phase string) func(*store.Promotion) {
	return func(p *store.Promotion) {
		e := &p.Environments[i]
		e.Phase = phase
		ns := []string{nsTest, nsProd}[i]
		switch phase {
		case store.EnvRolling, store.EnvVerifying, store.EnvRollingBack, store.EnvSucceeded:
			e.Previous, e.StartedAt = previous(ns), t0
		case store.EnvApproved:
			e.Approver, e.ApprovedAt = "alice", t0
		}
		if phase == store.EnvVerifying || phase == store.EnvSucceeded {
			e.VerifyingSince = t0
		}
	}
}

func state(s string) func(*store.Promotion) { return func(p *store.Promotion) { p.State = s } }

func phases(p store.Promotion) []string {
	out := make([]string, len(p.Environments))
	for i, e := range p.Environments {
		out[i] = e.Phase
	}
	return out
}

// errRetry stands for any error other than ErrStop and ErrBusy: the step
// is tried again and nothing is recorded.
var errRetry = errors.New("retried")

func TestMachineSteps(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*machine)
		in    store.Promotion
		// What comes out: the error class, or the record's state, its
		// environments' phases, the audit action it appended and words of
		// its reason.
		err    error
		state  string
		phases []string
		audit  string
		reason string
		// The images test and production run afterwards ("" is v0).
		test, prod string
		check      func(t *testing.T, m *machine, in, got store.Promotion)
		// deadline bounds the step (default 10s).
		deadline time.Duration
	}{
		// Copy.
		{
			name:  "a new promotion is copied by digest with its tags",
			in:    promotion(func(p *store.Promotion) { p.Target = "" }),
			state: store.PromotionRunning, phases: []string{"pending", "pending"}, audit: "copied",
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				if got.Target != theTarget || len(m.images.copies) != 1 || m.images.copies[0] != "1.4.0" {
					t.Errorf("target %s, copies %q; want %s, one copy tagged 1.4.0", got.Target, m.images.copies, theTarget)
				}
			},
		},
		{
			name:  "a copy the registry refuses fails the promotion",
			setup: func(m *machine) { m.images.copy = refuse(http.StatusForbidden) },
			in:    promotion(func(p *store.Promotion) { p.Target = "" }),
			state: store.PromotionFailed, phases: []string{"pending", "pending"}, audit: "failed", reason: "copy to " + dstRepo,
		},
		{
			name:  "a copy the registry could not take is retried",
			setup: func(m *machine) { m.images.copy = refuse(http.StatusServiceUnavailable) },
			in:    promotion(func(p *store.Promotion) { p.Target = "" }),
			err:   errRetry,
		},

		// Rolling an environment.
		{
			name:  "an environment records what runs before changing it",
			in:    promotion(),
			state: store.PromotionRunning, phases: []string{"rolling", "pending"}, audit: "rollout started",
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				e := got.Environments[0]
				if len(e.Previous) != 1 || e.Previous[0] != previous(nsTest)[0] || !e.StartedAt.Equal(m.now) {
					t.Errorf("previous %+v started %s; want %+v at %s", e.Previous, e.StartedAt, previous(nsTest), m.now)
				}
				if m.updates[nsTest] != 0 {
					t.Errorf("test was changed before its previous image was recorded")
				}
			},
		},
		{
			name:  "a rolled out environment is verified next",
			in:    promotion(at(0, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"verifying", "pending"}, audit: "rolled out", test: theTarget,
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				if !got.Environments[0].VerifyingSince.Equal(m.now) {
					t.Errorf("verifying since %s, want %s", got.Environments[0].VerifyingSince, m.now)
				}
			},
		},
		{
			name:  "a rollout past its progress deadline is rolled back",
			setup: func(m *machine) { m.rollout = stuck },
			in:    promotion(at(0, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "test: deployment web-test/web exceeded its progress deadline",
			test: theTarget,
		},
		{
			name: "a rollout that does not finish in time is rolled back",
			setup: func(m *machine) {
				m.rollout = updating
				m.app.Environments[0].RolloutTimeout.Duration = 20 * time.Millisecond
			},
			in:    promotion(at(0, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "not rolled out within 20ms",
			test: theTarget,
		},
		{
			name:  "a paused deployment is rolled back without being changed",
			setup: func(m *machine) { pause(m, nsTest) },
			in:    promotion(at(0, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "is paused",
		},
		{
			name:  "a failed rollout of a rollback fails without reverting",
			setup: func(m *machine) { m.rollout = stuck },
			in: promotion(at(0, store.EnvRolling), func(p *store.Promotion) {
				p.Kind, p.RollbackOf, p.Environments = store.KindRollback, "p0", p.Environments[:1]
			}),
			state: store.PromotionFailed, phases: []string{"rolling"}, audit: "failed", reason: "progress deadline", test: theTarget,
		},
		{
			name:  "a failed check with nothing recorded to return to fails",
			setup: func(m *machine) { m.health["test.web"] = http.StatusBadGateway },
			in:    promotion(at(0, store.EnvVerifying), func(p *store.Promotion) { p.Environments[0].Previous = nil }),
			state: store.PromotionFailed, phases: []string{"verifying", "pending"}, audit: "failed", reason: "test: GET http://test.web/healthz failed",
		},

		// Verifying.
		{
			name:  "a verified environment has succeeded",
			in:    promotion(at(0, store.EnvVerifying)),
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			state: store.PromotionRunning, phases: []string{"succeeded", "pending"}, audit: "verified", test: theTarget,
		},
		{
			name: "a failing check rolls the environment back",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.health["test.web"] = http.StatusInternalServerError
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "test: GET http://test.web/healthz failed 2 times",
			test: theTarget,
		},
		{
			name: "a deployment changed by someone else fails verification",
			setup: func(m *machine) {
				m.set(nsTest, dstRepo+":hotfix")
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "changed to " + dstRepo + ":hotfix",
			test: dstRepo + ":hotfix",
		},
		{
			name: "the soak is over by the promoter's clock",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify.Soak.Duration = 10 * time.Minute
				m.now = t0.Add(11 * time.Minute)
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"succeeded", "pending"}, audit: "verified", test: theTarget,
		},
		{
			name: "a soak that is not over waits and records nothing",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify.Soak.Duration = 10 * time.Minute
				m.now = t0.Add(time.Minute)
			},
			in:   promotion(at(0, store.EnvVerifying)),
			err:  errRetry,
			test: theTarget, deadline: 50 * time.Millisecond,
		},

		{
			name: "a verification Job that completes verifies the environment",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify = jobOnly()
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"succeeded", "pending"}, audit: "verified", test: theTarget,
			check: func(t *testing.T, m *machine, in, _ store.Promotion) {
				j, err := m.kube.BatchV1().Jobs(nsTest).Get(ctx(), promote.VerifyJobName(in.ID, "test"), metav1.GetOptions{})
				if err != nil {
					t.Fatalf("verification job: %v", err)
				}
				if env := j.Spec.Template.Spec.Containers[0].Env; len(env) != 4 || env[0].Value != theTarget {
					t.Errorf("job env = %+v, want FERRY_IMAGE=%s first of four", env, theTarget)
				}
			},
		},
		{
			name: "a verification Job that fails rolls the environment back",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify = jobOnly()
				m.job = batchv1.JobFailed
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"rolling_back", "pending"}, audit: "failed", reason: "failed: BackoffLimitExceeded",
			test: theTarget,
		},
		{
			name: "a verified environment's Job is deleted before anything else",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify = jobOnly()
				_, _ = m.kube.BatchV1().Jobs(nsTest).Create(ctx(), &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
					Name: promote.VerifyJobName(promotion().ID, "test"), Namespace: nsTest}}, metav1.CreateOptions{})
			},
			in: promotion(at(0, store.EnvSucceeded), func(p *store.Promotion) {
				p.Audit = []store.AuditEntry{{At: t0, Actor: "ferry", Action: "rolled out", Environment: "test"}}
			}),
			state: store.PromotionRunning, phases: []string{"succeeded", "pending"}, audit: "verification job deleted", test: theTarget,
			check: func(t *testing.T, m *machine, in, _ store.Promotion) {
				if _, err := m.kube.BatchV1().Jobs(nsTest).Get(ctx(), promote.VerifyJobName(in.ID, "test"), metav1.GetOptions{}); err == nil {
					t.Errorf("the verification job is still there")
				}
			},
		},

		// Rolling back.
		{
			name:  "rolling back restores the recorded images and fails the promotion",
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			in: promotion(at(0, store.EnvRollingBack), func(p *store.Promotion) {
				p.Reason = "test: GET failed"
			}),
			state: store.PromotionFailed, phases: []string{"rolled_back", "pending"}, audit: "rolled back", reason: "test: GET failed",
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				if strings.Contains(got.Reason, "incomplete") || !got.FinishedAt.Equal(m.now) {
					t.Errorf("reason %q finished %s; want a complete rollback finished at %s", got.Reason, got.FinishedAt, m.now)
				}
			},
		},
		{
			name: "a rollback that cannot finish says so",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.rollout = stuck
			},
			in:    promotion(at(0, store.EnvRollingBack), func(p *store.Promotion) { p.Reason = "test: GET failed" }),
			state: store.PromotionFailed, phases: []string{"rolled_back", "pending"}, audit: "rolled back", reason: "rollback incomplete",
		},

		// The approval gate.
		{
			name:  "an environment that needs approval waits for it",
			in:    promotion(at(0, store.EnvSucceeded)),
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			state: store.PromotionWaiting, phases: []string{"succeeded", "awaiting_approval"}, audit: "awaiting approval", test: theTarget,
		},
		{
			name: "the gate recorded with the promotion holds when the configuration drops it",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[1].Approval = false
			},
			in:    promotion(at(0, store.EnvSucceeded)),
			state: store.PromotionWaiting, phases: []string{"succeeded", "awaiting_approval"}, audit: "awaiting approval", test: theTarget,
		},
		{
			name:  "a gate added to the configuration later is not imposed",
			setup: func(m *machine) { m.app.Environments[0].Approval = true },
			in:    promotion(),
			state: store.PromotionRunning, phases: []string{"rolling", "pending"}, audit: "rollout started",
		},
		{
			name: "a waiting promotion has nothing to do, however long it waits",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.now = t0.Add(30 * 24 * time.Hour)
			},
			in:  promotion(at(0, store.EnvSucceeded), at(1, store.EnvAwaitingApprove), state(store.PromotionWaiting)),
			err: promote.ErrStop, test: theTarget,
		},
		{
			name:  "an environment awaiting approval is not rolled, whatever the promotion's state says",
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			in:    promotion(at(0, store.EnvSucceeded), at(1, store.EnvAwaitingApprove)),
			err:   promote.ErrStop, test: theTarget,
		},
		{
			name:  "an approved environment is rolled",
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			in:    promotion(at(0, store.EnvSucceeded), at(1, store.EnvApproved)),
			state: store.PromotionRunning, phases: []string{"succeeded", "rolling"}, audit: "rollout started", test: theTarget,
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				if e := got.Environments[1]; e.Approver != "alice" || len(e.Previous) != 1 || e.Previous[0].Image != v0 {
					t.Errorf("production = %+v; want alice's approval kept and v0 recorded", e)
				}
			},
		},
		{
			name:  "a rejected promotion has nothing to do",
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			in:    promotion(at(0, store.EnvSucceeded), at(1, store.EnvRejected), state(store.PromotionRejected)),
			err:   promote.ErrStop, test: theTarget,
		},

		// The end.
		{
			name: "every environment verified: the promotion succeeded",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.set(nsProd, theTarget)
			},
			in:    promotion(at(0, store.EnvSucceeded), at(1, store.EnvSucceeded)),
			state: store.PromotionSucceeded, phases: []string{"succeeded", "succeeded"}, audit: "succeeded", test: theTarget, prod: theTarget,
		},
		{
			name: "a finished promotion has nothing to do",
			in:   promotion(at(0, store.EnvRolledBack), state(store.PromotionFailed)),
			err:  promote.ErrStop,
		},
		{
			name:  "an app no longer configured fails its promotion",
			in:    promotion(func(p *store.Promotion) { p.App = "gone" }),
			state: store.PromotionFailed, phases: []string{"pending", "pending"}, audit: "failed", reason: "app gone is no longer configured",
		},
		{
			name:  "an environment no longer configured fails the promotion",
			setup: func(m *machine) { m.app.Environments = m.app.Environments[:1] },
			in:    promotion(at(0, store.EnvSucceeded)),
			state: store.PromotionFailed, phases: []string{"succeeded", "pending"}, audit: "failed", reason: "environment production is no longer configured",
		},
		{
			name:  "an unknown phase fails the promotion",
			in:    promotion(at(0, "paused")),
			state: store.PromotionFailed, phases: []string{"paused", "pending"}, audit: "failed", reason: `unknown phase "paused"`,
		},

		// Restarts: every row runs on a new promoter; these pin what a
		// restart must not repeat.
		{
			name:  "restarted after the copy: not copied again",
			in:    promotion(),
			state: store.PromotionRunning, phases: []string{"rolling", "pending"}, audit: "rollout started",
			check: func(t *testing.T, m *machine, _, _ store.Promotion) {
				if len(m.images.copies) != 0 {
					t.Errorf("copied %d times after a restart; the record has the target", len(m.images.copies))
				}
			},
		},
		{
			name:  "restarted mid-rollout: the recorded previous image is kept and nothing changed twice",
			setup: func(m *machine) { m.set(nsTest, theTarget) },
			in:    promotion(at(0, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"verifying", "pending"}, audit: "rolled out", test: theTarget,
			check: func(t *testing.T, m *machine, _, got store.Promotion) {
				if p := got.Environments[0].Previous; len(p) != 1 || p[0].Image != v0 {
					t.Errorf("previous = %+v, want v0 as recorded before the restart", p)
				}
				if m.updates[nsTest] != 0 {
					t.Errorf("test updated %d times; it already ran the target", m.updates[nsTest])
				}
			},
		},
		{
			name: "restarted mid-soak: the soak is not started over",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.app.Environments[0].Verify.Soak.Duration = 10 * time.Minute
				m.now = t0.Add(10*time.Minute + time.Second)
			},
			in:    promotion(at(0, store.EnvVerifying)),
			state: store.PromotionRunning, phases: []string{"succeeded", "pending"}, audit: "verified", test: theTarget,
		},
		{
			name: "restarted after approval: the verified environment is not rolled again",
			setup: func(m *machine) {
				m.set(nsTest, theTarget)
				m.rollout = func(d *appsv1.Deployment) appsv1.DeploymentStatus {
					if d.Namespace == nsTest {
						return stuck(d) // touching test again would fail
					}
					return healthy(d)
				}
			},
			in:    promotion(at(0, store.EnvSucceeded), at(1, store.EnvRolling)),
			state: store.PromotionRunning, phases: []string{"succeeded", "verifying"}, audit: "rolled out", test: theTarget, prod: theTarget,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, tt.setup)
			if tt.deadline == 0 {
				tt.deadline = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			got, err := m.p.Step(ctx, tt.in)
			switch {
			case errors.Is(tt.err, errRetry):
				if err == nil || errors.Is(err, promote.ErrStop) || errors.Is(err, promote.ErrBusy) {
					t.Fatalf("err = %v, want one that retries the step", err)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			case err != nil:
				t.Fatalf("err = %v; want the record to store", err)
			default:
				if got.State != tt.state || strings.Join(phases(got), ",") != strings.Join(tt.phases, ",") {
					t.Errorf("state %s, phases %v; want %s, %v (reason %q)", got.State, phases(got), tt.state, tt.phases, got.Reason)
				}
				added := got.Audit[len(tt.in.Audit):]
				if len(added) != 1 || added[0].Action != tt.audit || !added[0].At.Equal(m.now) {
					t.Errorf("audit added %+v, want one %q at %s", added, tt.audit, m.now)
				}
				if !strings.Contains(got.Reason, tt.reason) || (tt.reason == "" && got.Reason != "") {
					t.Errorf("reason %q, want %q", got.Reason, tt.reason)
				}
			}
			for ns, want := range map[string]string{nsTest: tt.test, nsProd: tt.prod} {
				if want == "" {
					want = v0
				}
				if img := m.runs(t, ns); img != want {
					t.Errorf("%s runs %s, want %s", ns, img, want)
				}
			}
			if tt.check != nil {
				tt.check(t, m, tt.in, got)
			}
		})
	}
}

// jobOnly verifies with a Job alone.
func jobOnly() config.Verification {
	return config.Verification{Job: config.JobCheck{
		Template: &batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "smoke", Image: "registry.example/smoke:1"}},
		}}},
		Timeout: config.Duration{Duration: 10 * time.Second},
	}}
}

// refuse answers like a registry that returns code.
func refuse(code int) func(name.Digest, name.Repository, []string) (name.Digest, error) {
	return func(name.Digest, name.Repository, []string) (name.Digest, error) {
		return name.Digest{}, &transport.Error{StatusCode: code}
	}
}

func pause(m *machine, ns string) {
	obj, _ := m.kube.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), ns, "web")
	d := obj.(*appsv1.Deployment)
	d.Spec.Paused = true
	_ = m.kube.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), d, ns)
}

// The approval gate: an approver lets the waiting environment in, or
// refuses it; nothing else passes it.
func TestApprovalGate(t *testing.T) {
	waiting := promotion(at(0, store.EnvSucceeded), at(1, store.EnvAwaitingApprove), state(store.PromotionWaiting))
	tests := []struct {
		name   string
		in     store.Promotion
		decide func(p *promote.Promoter, id string) (store.Promotion, error)
		err    error
		// After the decision and one step: the state, production's phase,
		// and the image production runs.
		state, phase, prod string
		reason             string
	}{
		{
			name: "approved: production is rolled",
			in:   waiting,
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Approve(ctx(), id, "", "alice")
			},
			state: store.PromotionRunning, phase: store.EnvRolling,
		},
		{
			name: "approved naming the waiting environment",
			in:   waiting,
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Approve(ctx(), id, "production", "alice")
			},
			state: store.PromotionRunning, phase: store.EnvRolling,
		},
		{
			name: "an approval naming another environment is refused",
			in:   waiting,
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Approve(ctx(), id, "test", "alice")
			},
			err:   promote.ErrState,
			state: store.PromotionWaiting, phase: store.EnvAwaitingApprove,
		},
		{
			name: "a running promotion cannot be approved",
			in:   promotion(at(0, store.EnvRolling)),
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Approve(ctx(), id, "", "mallory")
			},
			err:   promote.ErrState,
			state: store.PromotionRunning, phase: store.EnvPending,
		},
		{
			name: "rejected: nothing more is rolled",
			in:   waiting,
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Reject(ctx(), id, "", "carol", "not today")
			},
			state: store.PromotionRejected, phase: store.EnvRejected, reason: "production rejected by carol: not today",
		},
		{
			name: "a rejected promotion cannot be approved",
			in:   promotion(at(0, store.EnvSucceeded), at(1, store.EnvRejected), state(store.PromotionRejected)),
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Approve(ctx(), id, "", "alice")
			},
			err:   promote.ErrState,
			state: store.PromotionRejected, phase: store.EnvRejected,
		},
		{
			name: "a finished promotion cannot be rejected",
			in:   promotion(at(0, store.EnvSucceeded), at(1, store.EnvSucceeded), state(store.PromotionSucceeded)),
			decide: func(p *promote.Promoter, id string) (store.Promotion, error) {
				return p.Reject(ctx(), id, "", "carol", "")
			},
			err:   promote.ErrState,
			state: store.PromotionSucceeded, phase: store.EnvSucceeded, prod: theTarget,
		},
		{
			name: "an unknown promotion is not found",
			in:   waiting,
			decide: func(p *promote.Promoter, _ string) (store.Promotion, error) {
				return p.Approve(ctx(), "nope", "", "alice")
			},
			err:   promote.ErrNotFound,
			state: store.PromotionWaiting, phase: store.EnvAwaitingApprove,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, func(m *machine) {
				m.set(nsTest, theTarget)
				if tt.prod != "" {
					m.set(nsProd, tt.prod)
				}
			})
			stored, err := m.store.PutPromotion(ctx(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			decided, err := tt.decide(m.p, stored.ID)
			if !errors.Is(err, tt.err) {
				t.Fatalf("decision: err = %v, want %v", err, tt.err)
			}
			after, _ := m.store.GetPromotion(ctx(), stored.ID)
			if err != nil {
				if after.Revision != stored.Revision {
					t.Errorf("a refused decision changed the record: revision %d -> %d", stored.Revision, after.Revision)
				}
			} else if after.Revision != decided.Revision {
				t.Errorf("returned revision %d, stored %d", decided.Revision, after.Revision)
			}
			next, err := m.p.Step(ctx(), after)
			if errors.Is(err, promote.ErrStop) {
				next = after
			} else if err != nil {
				t.Fatalf("step after the decision: %v", err)
			}
			if next.State != tt.state || next.Environments[1].Phase != tt.phase || next.Reason != tt.reason {
				t.Errorf("then: state %s, production %s, reason %q; want %s, %s, %q", next.State, next.Environments[1].Phase, next.Reason, tt.state, tt.phase, tt.reason)
			}
			want := tt.prod
			if want == "" {
				want = v0
			}
			if img := m.runs(t, nsProd); img != want {
				t.Errorf("production runs %s, want %s", img, want)
			}
			if tt.err == nil && tt.state != store.PromotionRejected {
				e := next.Environments[1]
				if e.Approver != "alice" || !e.ApprovedAt.Equal(m.now) || len(e.Previous) != 1 || e.Previous[0].Image != v0 {
					t.Errorf("production = %+v; want alice's approval at %s and v0 recorded", e, m.now)
				}
			}
		})
	}
}

func ctx() context.Context { return context.Background() }

// The runner drives a requested promotion to the gate, a new promoter on
// the same store (a restart, a new leader) takes it from there after the
// approval, and nothing done before the restart is done again.
func TestRunnerResumesAcrossRestarts(t *testing.T) {
	m := newMachine(t, nil)
	run := func(p *promote.Promoter) func() {
		c, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Run(c)
		}()
		return func() { cancel(); <-done }
	}
	stop := run(m.p)
	p, err := m.p.Create(ctx(), promote.Request{App: "web", Image: srcRepo + ":build-7", Commit: "4f2a9c0d1e3b", Version: "1.4.0", RequestedBy: "jenkins"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if p.SourceDigest != theDigest || p.Environments[1].NeedsApproval != true {
		t.Fatalf("created %+v", p)
	}
	waitState(t, m.store, p.ID, store.PromotionWaiting)
	stop()
	updates := m.updates[nsTest]

	// The new promoter shares only the store and the world outside.
	p2, err := promote.New(promote.Config{
		Store: m.store, Apps: []config.PromotionApp{m.app}, Registry: m.images,
		Kube:       func(string) (kubernetes.Interface, error) { return m.kube, nil },
		HTTPClient: &http.Client{Transport: roundTrip(func(r *http.Request) int { return m.health[r.URL.Host] })},
		Poll:       time.Millisecond, Resync: 10 * time.Millisecond, Now: func() time.Time { return m.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	stop = run(p2)
	defer stop()
	if _, err := p2.Approve(ctx(), p.ID, "production", "alice"); err != nil {
		t.Fatalf("approve: %v", err)
	}
	got := waitState(t, m.store, p.ID, store.PromotionSucceeded)
	stop()

	if m.runs(t, nsTest) != theTarget || m.runs(t, nsProd) != theTarget {
		t.Errorf("test runs %s, production %s; want both %s", m.runs(t, nsTest), m.runs(t, nsProd), theTarget)
	}
	if len(m.images.copies) != 1 || m.updates[nsTest] != updates || m.updates[nsProd] != 1 {
		t.Errorf("copies %d, test updates %d -> %d, production updates %d; want one copy, test not touched after the restart, production once",
			len(m.images.copies), updates, m.updates[nsTest], m.updates[nsProd])
	}
	want := map[[2]string]int{
		{"copied", ""}: 1, {"rollout started", "test"}: 1, {"rolled out", "test"}: 1, {"verified", "test"}: 1,
		{"awaiting approval", "production"}: 1, {"approved", "production"}: 1, {"rollout started", "production"}: 1,
		{"rolled out", "production"}: 1, {"verified", "production"}: 1, {"succeeded", ""}: 1,
	}
	for k, n := range want {
		if got := actions(got, k[0], k[1]); got != n {
			t.Errorf("%d %q entries for %q, want %d", got, k[0], k[1], n)
		}
	}
	if len(got.Audit) != 11 { // requested, plus the above
		t.Errorf("audit has %d entries, want 11: %+v", len(got.Audit), got.Audit)
	}
}

func waitState(t *testing.T, st store.Store, id, state string) store.Promotion {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := st.GetPromotion(ctx(), id)
		if err == nil && p.State == state {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("promotion %s never became %s; last %s %q %v", id, state, p.State, p.Reason, phases(p))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Promoting a digest an environment runs already (or ran before) still
// verifies it there: the checks run against the environment as it is now,
// so a digest that passed once and fails now is not waved through (Kargo
// skips this, its issue #6372).
func TestRepromotionReverifies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health int
		state  string
	}{
		{"healthy again", http.StatusOK, store.PromotionWaiting},
		{"failing now", http.StatusServiceUnavailable, store.PromotionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, nil)
			m.set(nsTest, theTarget) // test ran (and runs) this digest already
			m.health["test.web"] = tc.health
			var checks atomic.Int64
			p, err := promote.New(promote.Config{
				Store: m.store, Apps: []config.PromotionApp{m.app}, Registry: m.images,
				Kube: func(string) (kubernetes.Interface, error) { return m.kube, nil },
				HTTPClient: &http.Client{Transport: roundTrip(func(r *http.Request) int {
					if r.URL.Host == "test.web" {
						checks.Add(1)
					}
					return m.health[r.URL.Host]
				})},
				Poll: time.Millisecond, Resync: 10 * time.Millisecond, Now: func() time.Time { return m.now },
			})
			if err != nil {
				t.Fatal(err)
			}
			c, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = p.Run(c) }()
			defer func() { cancel(); <-done }()
			pr, err := p.Create(ctx(), promote.Request{App: "web", Image: srcRepo + ":build-7", Commit: "4f2a9c0d1e3b", Version: "1.4.0"})
			if err != nil {
				t.Fatal(err)
			}
			got := waitState(t, m.store, pr.ID, tc.state)
			if checks.Load() == 0 {
				t.Errorf("test was not checked: the digest it ran before was taken as verified")
			}
			if tc.state == store.PromotionFailed && (!strings.Contains(got.Reason, "test.web/healthz") || actions(got, "verified", "test") != 0) {
				t.Errorf("reason %q, audit %+v; want test's failing check", got.Reason, got.Audit)
			}
			if tc.state == store.PromotionWaiting && actions(got, "verified", "test") != 1 {
				t.Errorf("audit %+v; want test verified once", got.Audit)
			}
		})
	}
}
