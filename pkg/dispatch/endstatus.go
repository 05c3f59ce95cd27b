package dispatch

import (
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// EndStatus is the commit status the dispatcher reports for a build record
// with a known end (Result set), for readers of build trails.
func EndStatus(b store.Build) scm.Status { return endStatus(b) }
