// Module test/tools fences the test bed's tool modules off from ferry's own
// go.mod: the root module never sees their (large) dependency graphs. The
// tools themselves live in the nested modules kube/, etcd/, kwok/ and
// helm/, built by test/bed/build-tools.sh into bin/.
module github.com/ferryci/ferry/test/tools

go 1.26.8
