package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/scmfake"
	"github.com/ferryci/ferry/test/testbed"
)

const spotAnnotation = "k8s.aliyun.com/eci-spot-strategy"

// agentsWorld is ferry with agents on the bed: spot templates, and a
// player that connects the agent of every Running agent pod once.
func agentsWorld(t *testing.T) (*world, kubernetes.Interface, string) {
	env := testbed.Kube(t)
	cs := testbed.Clientset(t)
	ns := testbed.Namespace(t)
	const label = "ferry-agent"
	w := start(t, func(c *config.Config) {
		c.Agents.Enabled = true
		c.Agents.Namespace = ns
		c.Agents.Kubeconfig = env.Get(testbed.KeyKubeconfigFerry)
		c.Agents.Resync = config.Duration{Duration: 500 * time.Millisecond}
		c.Agents.LeaderElection.LeaseDuration = config.Duration{Duration: 4 * time.Second}
		c.Agents.LeaderElection.RenewDeadline = config.Duration{Duration: 3 * time.Second}
		c.Agents.LeaderElection.RetryPeriod = config.Duration{Duration: 500 * time.Millisecond}
		tmpl := eci.Template{Name: "default", Labels: []string{label},
			PodAnnotations: map[string]string{testbed.StartDelayAnnotation: "0s"}}
		tmpl.ECI.SpotStrategy = eci.SpotAsPriceGo
		c.Agents.Templates = []eci.Template{tmpl}
	})
	if err := w.jenkins.UpdateJob("acme/app", func(s *jenkinsemu.JobSpec) { s.Label = label }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		connected := map[types.UID]bool{}
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: eci.LabelAgent})
			if err == nil {
				for _, p := range pods.Items {
					if connected[p.UID] || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
						continue
					}
					agent := p.Labels[eci.LabelAgent]
					if err := w.jenkins.ConnectAgent(agent, w.jenkins.AgentSecret(agent)); err == nil {
						connected[p.UID] = true
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w, cs, ns
}

// buildOn waits for build number n of acme/app to run on an agent and
// returns it.
func (w *world) buildOn(n int) jenkinsemu.Build {
	var b jenkinsemu.Build
	w.eventually(fmt.Sprintf("build #%d running on an agent", n), func() bool {
		for _, x := range w.builds("acme/app") {
			if x.Number == n && x.Node != "" && x.Building {
				b = x
				return true
			}
		}
		return false
	})
	return b
}

// A spot reclaim under a running build ends in exactly one re-run, on an
// on-demand agent, with the commit saying so; also when ferry is down
// while the instance goes and comes back after.
func TestSpotReclaimUnderABuildIsRerunOnceOnDemand(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "running", true: "restarted between the loss and the re-run"}[restart], func(t *testing.T) {
			w, cs, ns := agentsWorld(t)
			delivery := fmt.Sprintf("rerun-%v", restart)
			if code, r := w.githubHook("push", delivery, w.payload("github_push.json")); code != http.StatusAccepted {
				t.Fatalf("push answered %d %+v", code, r)
			}
			first := w.buildOn(1)
			key := first.Params[config.ParamTriggerID]
			pod, err := cs.CoreV1().Pods(ns).Get(context.Background(), first.Node, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pod.Annotations[spotAnnotation] != eci.SpotAsPriceGo {
				t.Fatalf("first agent's spot strategy %q, want spot", pod.Annotations[spotAnnotation])
			}
			if restart {
				w.stop()
			}
			// ECI warns, then reclaims the instance under the build.
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:"100ms",%q:"300ms"}}}`,
				testbed.SimulateAnnotation, testbed.SimulateSpotReclaim,
				testbed.SpotWarningDelayAnnotation, testbed.SpotReleaseDelayAnnotation)
			if _, err := cs.CoreV1().Pods(ns).Patch(context.Background(), first.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			if restart {
				w.eventually("the spot instance reclaimed while ferry is down", func() bool {
					p, err := cs.CoreV1().Pods(ns).Get(context.Background(), first.Node, metav1.GetOptions{})
					return err == nil && p.Status.Phase == corev1.PodFailed
				})
				w.run()
			}
			second := w.buildOn(2)
			if got, want := second.Params[config.ParamTriggerID], key+"#2"; got != want {
				t.Fatalf("second build's trigger id %q, want %q", got, want)
			}
			if second.Params[config.ParamSHA] != ghSHA {
				t.Errorf("re-run builds %q, want the same commit", second.Params[config.ParamSHA])
			}
			rp, err := cs.CoreV1().Pods(ns).Get(context.Background(), second.Node, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := rp.Annotations[spotAnnotation]; ok || rp.Annotations[eci.AnnotationOnDemand] != "true" {
				t.Errorf("re-run agent: spot %q (set %v), on-demand %q; want on-demand", s, ok, rp.Annotations[eci.AnnotationOnDemand])
			}
			if err := w.jenkins.FinishBuild("acme/app", 2, jenkinsemu.Success); err != nil {
				t.Fatal(err)
			}
			w.github.WaitFor(t, scmfake.HasStates(ghSHA, "ferry/app", "pending", "success"), 30*time.Second)
			var rerunning, success bool
			for _, s := range w.github.Statuses() {
				if s.Context != "ferry/app" {
					continue
				}
				rerunning = rerunning || (s.State == "pending" && s.Description == "re-running: spot instance reclaimed")
				if s.State == "success" {
					success = strings.HasPrefix(s.Description, "re-run after spot instance reclaimed") && strings.Contains(s.TargetURL, "/job/app/2/")
				}
				if s.State == "failure" || s.State == "error" {
					t.Errorf("status %s %q: the lost build must not show as failed", s.State, s.Description)
				}
			}
			if !rerunning || !success {
				t.Errorf("statuses %+v: want 're-running: spot instance reclaimed', then the re-run's success linking build 2", w.github.Statuses())
			}
			w.eventually("every agent gone", func() bool {
				pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
				return err == nil && len(pods.Items) == 0
			})
			if n := len(w.builds("acme/app")); n != 2 {
				t.Fatalf("%d builds, want the lost one and exactly one re-run", n)
			}
		})
	}
}

// A build whose steps fail is not re-run: its agent was alive to the end.
func TestFailingBuildIsNotRerun(t *testing.T) {
	w, cs, ns := agentsWorld(t)
	if code, r := w.githubHook("push", "fails-1", w.payload("github_push.json")); code != http.StatusAccepted {
		t.Fatalf("push answered %d %+v", code, r)
	}
	w.buildOn(1)
	if err := w.jenkins.FinishBuild("acme/app", 1, jenkinsemu.Failure); err != nil {
		t.Fatal(err)
	}
	w.github.WaitFor(t, scmfake.HasStates(ghSHA, "ferry/app", "pending", "failure"), 30*time.Second)
	w.eventually("the agent gone and the event done", func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
		return err == nil && len(pods.Items) == 0 && w.streamLen() >= 0 && len(w.jenkins.QueueItems()) == 0
	})
	if n := len(w.builds("acme/app")); n != 1 {
		t.Fatalf("%d builds, want 1: a failing build is never re-run", n)
	}
	for _, s := range w.github.Statuses() {
		if strings.Contains(s.Description, "re-run") {
			t.Errorf("status %q mentions a re-run", s.Description)
		}
	}
}
