package sipadapter_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/sipadapter"
)

func TestNewLegNamesTheMissingField(t *testing.T) {
	_, err := sipadapter.NewLeg(sipadapter.LegConfig{})
	require.ErrorContains(t, err, "legConfig.Dialog")
}
