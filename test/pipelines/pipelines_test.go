// Package pipelines checks the Jenkinsfiles and the agent image definition
// users copy from pipelines/: their Groovy parses, they declare what ferry
// sends, and they agree with the configuration in examples/.
package pipelines

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
)

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func jenkinsfiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(root(t), "pipelines"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "Jenkinsfile" {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 3 {
		t.Fatalf("found %d Jenkinsfiles under pipelines/, want the minimal one and the GitHub and GitLab ones", len(out))
	}
	return out
}

// checker parses each file given with Groovy's own parser and names those
// that do not compile.
const checker = `
def failed = 0
args.each { path ->
  try {
    new GroovyShell().parse(new File(path))
  } catch (org.codehaus.groovy.control.MultipleCompilationErrorsException e) {
    failed++
    System.err.println("${path}: ${e.message}")
  }
}
System.exit(failed ? 1 : 0)
`

// groovy finds the groovy command and a JAVA_HOME it can use (Debian's
// groovy looks for /usr/lib/jvm/default-java, which only default-jre makes).
func groovy(t *testing.T) (string, []string) {
	t.Helper()
	bin, err := exec.LookPath("groovy")
	if err != nil {
		msg := "groovy is not installed (apt-get install groovy; make deps does)"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	env := os.Environ()
	if os.Getenv("JAVA_HOME") == "" {
		if _, err := os.Stat("/usr/lib/jvm/default-java/bin/java"); err != nil {
			java, err := exec.LookPath("java")
			if err != nil {
				t.Fatal("groovy needs java on PATH or JAVA_HOME")
			}
			if real, err := filepath.EvalSymlinks(java); err == nil {
				env = append(env, "JAVA_HOME="+filepath.Dir(filepath.Dir(real)))
			}
		}
	}
	return bin, env
}

func TestJenkinsfilesParseAsGroovy(t *testing.T) {
	files := jenkinsfiles(t)
	bin, env := groovy(t)
	script := filepath.Join(t.TempDir(), "check.groovy")
	if err := os.WriteFile(script, []byte(checker), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(files ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{script}, files...)...) //nolint:gosec // the test's own files
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(files...); err != nil {
		t.Fatalf("Groovy does not parse a Jenkinsfile: %v\n%s", err, out)
	}
	// The checker can fail: a Jenkinsfile with a brace missing.
	data, _ := os.ReadFile(files[0])
	broken := filepath.Join(t.TempDir(), "Jenkinsfile")
	if err := os.WriteFile(broken, []byte(strings.TrimRight(string(data), "}\n \t")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(broken)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(out, "expecting '}'") {
		t.Fatalf("a broken Jenkinsfile passed the check: %v\n%s", err, out)
	}
}

var paramDecl = regexp.MustCompile(`string\(name: '([A-Z_]+)'`)

func TestJenkinsfilesDeclareWhatFerrySends(t *testing.T) {
	for _, f := range jenkinsfiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var declared []string
		for _, m := range paramDecl.FindAllStringSubmatch(string(data), -1) {
			declared = append(declared, m[1])
		}
		for _, p := range config.ReservedParams {
			if !slices.Contains(declared, p) {
				t.Errorf("%s does not declare %s: Jenkins would drop it", f, p)
			}
		}
		if !strings.Contains(string(data), "branches: [[name: params.FERRY_GIT_SHA]]") {
			t.Errorf("%s does not check out the delivered SHA", f)
		}
	}
}

var (
	quoted = func(key string) *regexp.Regexp { return regexp.MustCompile(key + ` = '([^']+)'`) }
	label  = regexp.MustCompile(`agent \{ label '([^']+)' \}`)
)

// The full pipelines use what examples/ferry.yaml configures: a template
// serving their label, an image destination ferry builds to, the app they
// promote and its source repository.
func TestFullPipelinesMatchTheExampleConfig(t *testing.T) {
	cfg, err := config.LoadFile(filepath.Join(root(t), "examples", "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, provider := range []string{"github", "gitlab"} {
		t.Run(provider, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(root(t), "pipelines", provider, "Jenkinsfile"))
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			lbl := label.FindStringSubmatch(text)
			if lbl == nil || !slices.ContainsFunc(cfg.Agents.Templates, func(tp eci.Template) bool { return tp.Serves(lbl[1]) }) {
				t.Errorf("no template of examples/ferry.yaml serves the pipeline's agent label %v", lbl)
			}
			repo, app := quoted("IMAGE_REPO").FindStringSubmatch(text), quoted("APP").FindStringSubmatch(text)
			if repo == nil || app == nil {
				t.Fatal("IMAGE_REPO or APP not set in the environment block")
			}
			if !slices.ContainsFunc(cfg.Images.Destinations, func(d string) bool {
				p, ok := strings.CutSuffix(d, "/*")
				return d == repo[1] || (ok && strings.HasPrefix(repo[1], p+"/"))
			}) {
				t.Errorf("IMAGE_REPO %s is not under images.destinations %v", repo[1], cfg.Images.Destinations)
			}
			i := slices.IndexFunc(cfg.Promotion.Apps, func(a config.PromotionApp) bool { return a.Name == app[1] })
			if i < 0 {
				t.Fatalf("APP %s is not a promotion app of examples/ferry.yaml", app[1])
			}
			if src := cfg.Promotion.Apps[i].Source; src != repo[1] {
				t.Errorf("the app's source is %s, but the pipeline pushes to %s", src, repo[1])
			}
			for _, want := range []string{"ferry image build", "--output-file image.txt", `ferry promote create --app "$APP" --image "$(cat image.txt)"`, "--wait"} {
				if !strings.Contains(text, want) {
					t.Errorf("the pipeline lacks %q", want)
				}
			}
		})
	}
}

func TestAgentImageBuildsOnFerrysDefaultAgent(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), "pipelines", "agent", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "FROM" {
			from = append(from, f[1])
		}
	}
	if len(from) == 0 || from[len(from)-1] != eci.DefaultImage {
		t.Errorf("the agent image is FROM %v; keep its last stage on ferry's default agent image %s", from, eci.DefaultImage)
	}
	if !strings.Contains(string(data), "go build") || !strings.Contains(string(data), "./cmd/ferry") {
		t.Error("the agent image does not carry the ferry CLI")
	}
}
