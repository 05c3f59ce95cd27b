package kubeplugin

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/testbed"
)

// The imported templates' pods are accepted by a real API server (its
// validation and admission), created with ferry's own identity and rights;
// those that need nothing the bed lacks (a claim, a zone) are scheduled
// onto its virtual nodes.
func TestImportedPodsRunOnTheTestBed(t *testing.T) {
	res := importFile(t, "jcasc.yaml")
	ns := testbed.Namespace(t, testbed.AgentsRole)
	admin, ferry := testbed.Clientset(t), testbed.FerryClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The service account the templates name exists in a real cluster;
	// the admission plugin refuses pods whose account does not.
	for _, im := range res.Templates {
		if sa := im.Template.ServiceAccountName; sa != "" {
			_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
			if err != nil && !strings.Contains(err.Error(), "already exists") {
				t.Fatal(err)
			}
		}
	}
	templates, err := eci.Resolve(templatesOfResult(res))
	if err != nil {
		t.Fatal(err)
	}
	for i, im := range res.Templates {
		a := eci.Agent{Name: eci.AgentName(int64(100+i), 1), Namespace: ns, QueueID: int64(100 + i), Attempt: 1,
			JenkinsURL: "http://jenkins.invalid/", SecretName: "ferry-agent-secrets-none"}
		pod := eci.Render(templates[im.Template.Name], a)
		if _, err := ferry.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Errorf("template %s: the API server refused its pod: %v", im.Template.Name, err)
			continue
		}
	}
	scheduled := 0
	for i, im := range res.Templates {
		if needsMore(im.Template) {
			continue
		}
		scheduled++
		name := eci.AgentName(int64(100+i), 1)
		for {
			p, err := ferry.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("template %s: %v", im.Template.Name, err)
			}
			if p.Spec.NodeName != "" {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("template %s: pod %s never scheduled onto a virtual node", im.Template.Name, name)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if scheduled == 0 {
		t.Fatal("no imported template could be scheduled on the bed: the fixture no longer tests scheduling")
	}
}

// needsMore tells a template whose pods wait for what the bed does not
// have: a PersistentVolumeClaim, or nodes in a zone.
func needsMore(t eci.Template) bool {
	for _, v := range t.Volumes {
		if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
			return true
		}
	}
	return len(t.NodeSelector) > 0
}

func templatesOfResult(res Result) []eci.Template {
	out := make([]eci.Template, 0, len(res.Templates))
	for _, im := range res.Templates {
		out = append(out, im.Template)
	}
	return out
}
