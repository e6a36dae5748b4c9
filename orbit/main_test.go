package orbit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind, which would
// mean the concurrency tests did not wait for their workers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
