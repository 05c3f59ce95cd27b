package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/testbed"
)

// webDeployment creates Deployment web in ns on the bed's virtual nodes.
func webDeployment(t *testing.T, ns string) {
	t.Helper()
	one := int32(1)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: testbed.VirtualNodeSelector(), Tolerations: []corev1.Toleration{testbed.VirtualNodeToleration()},
			Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:v0"}},
		}},
	}}
	if _, err := testbed.Clientset(t).AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/web: %v", ns, err)
	}
}

// A real promotion on the test bed, decided in the browser: the image is
// copied by digest in the bed's registry and rolled to test, the
// promotion waits at production's gate; bob's forged Approve is refused,
// alice's click lets the promoter roll production, and the page follows
// it to succeeded without a reload.
func TestWebUIPromotionOnTheBed(t *testing.T) {
	exe := chromium(t)
	env := testbed.Kube(t)
	reg := testbed.RegistryAddr(t)
	nsTest, nsProd := testbed.Namespace(t, testbed.PromotionRole), testbed.Namespace(t, testbed.PromotionRole)
	webDeployment(t, nsTest)
	webDeployment(t, nsProd)
	id := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-" + time.Now().UTC().Format("150405.000")
	id = strings.ReplaceAll(id, ".", "")
	source, target := reg+"/ci/"+id+"/web", reg+"/release/"+id+"/web"
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(source + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	const pipeline = "ui-e2e-pipeline-token-0123456789"
	w := start(t, func(c *config.Config) {
		c.UI.Refresh = config.Duration{Duration: 500 * time.Millisecond}
		c.Promotion.Enabled = true
		c.Promotion.APIToken = pipeline
		c.Promotion.Kubeconfig = env.Get(testbed.KeyKubeconfigFerry)
		c.Promotion.LeaderElection.Enabled = false
		c.Promotion.Resync = config.Duration{Duration: 200 * time.Millisecond}
		c.Promotion.Auth.Tokens = []config.PromotionToken{
			{Name: "alice", SHA256: sha256hex(uiAlice), Roles: []config.PromotionRole{{Apps: []string{"web"}, Environments: []string{"*"}, Verbs: config.PromotionVerbs}}},
			{Name: "bob", SHA256: sha256hex(uiBob), Roles: []config.PromotionRole{{Apps: []string{"web"}, Environments: []string{"*"}, Verbs: []string{"get"}}}},
		}
		c.Promotion.Apps = []config.PromotionApp{{Name: "web", Source: source, Target: target,
			Environments: []config.PromotionEnvironment{
				{Name: "test", Namespace: nsTest, Deployments: []string{"web"}, RolloutTimeout: config.Duration{Duration: 2 * time.Minute}},
				{Name: "production", Namespace: nsProd, Deployments: []string{"web"}, Approval: true, RolloutTimeout: config.Duration{Duration: 2 * time.Minute}}}}}
	})
	p, err := (&api.Client{BaseURL: w.url, Token: pipeline}).Create(context.Background(), promote.Request{App: "web", Image: source + ":v1", Version: "1.0.0"})
	if err != nil {
		t.Fatalf("create the promotion: %v", err)
	}
	var pr store.Promotion
	waitPromotion := func(what string, ok func(store.Promotion) bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if pr, err = w.app().Store().GetPromotion(context.Background(), p.ID); err == nil && ok(pr) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("promotion %s never %s; last: %s %+v", p.ID, what, pr.State, pr.Environments)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitPromotion("waited at production's gate", func(p store.Promotion) bool { return p.State == store.PromotionWaiting })

	b := newBrowser(t, exe, w.url)
	page := "/ui/promotions/" + p.ID
	b.signIn(w.url, uiBob, page)
	b.waitText("section.gate", "bob may not approve")
	if eval[int](b, `document.querySelectorAll('#approve').length`) != 0 {
		t.Fatal("bob is shown an Approve button")
	}
	eval[bool](b, `(() => {
		const csrf = document.querySelector('.who input[name=csrf]').value;
		document.querySelector('section.gate').insertAdjacentHTML('beforeend',
			'<form method="post" action="`+page+`/approve"><input type="hidden" name="csrf" value="' + csrf +
			'"><input type="hidden" name="environment" value="production"><button id="forged" type="submit">Approve</button></form>');
		return true })()`)
	b.do("click the forged button", chromedp.Click(chromedp.CSS(`#forged`)), chromedp.WaitVisible(chromedp.CSS(`p.error`)))
	b.waitText("p.error", "bob (verified by token) may not approve promotions of web in production")
	b.shot("bed-promotion-refused")
	if pr, _ := w.app().Store().GetPromotion(context.Background(), p.ID); pr.State != store.PromotionWaiting {
		t.Fatalf("bob's refused click changed the promotion to %s", pr.State)
	}

	b.do("sign out bob", chromedp.Navigate(w.url+page), chromedp.Click(chromedp.CSS(`.who button`)), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	b.signIn(w.url, uiAlice, page)
	b.do("see the gate", chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	b.shot("bed-promotion-gate")
	b.do("approve", chromedp.Click(chromedp.CSS(`#approve`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	eval[bool](b, `window.ferryNoReload = true`)
	b.waitText("h1", "succeeded")
	if !eval[bool](b, `window.ferryNoReload === true`) {
		t.Error("the page was reloaded: it must follow the promotion in place")
	}
	waitPromotion("succeeded", func(p store.Promotion) bool { return p.State == store.PromotionSucceeded })
	if e := pr.Environments[1]; e.Approver != "alice" {
		t.Errorf("production approved by %q, want alice", e.Approver)
	}
	d, err := testbed.Clientset(t).AppsV1().Deployments(nsProd).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != pr.Target {
		t.Errorf("production runs %s, want %s", got, pr.Target)
	}
	b.shot("bed-promotion")
	b.do("promotions", chromedp.Navigate(w.url+"/ui/promotions"), chromedp.WaitVisible(chromedp.CSS(`section.app`)))
	b.waitText("section.app", "production")
	b.shot("bed-promotions")
	b.check()
}
