package test

import (
	"fmt"
	"os"
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

func TestMain(m *testing.M) {
	// The first of the package's motos (moto_pool_test.go), started here so
	// a missing moto fails the package at once.
	first, err := harness.StartMoto()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	motos.idle, motos.all = append(motos.idle, first), append(motos.all, first)
	code := m.Run()
	stopMotos()
	if peopleMoto != nil {
		peopleMoto.Stop()
	}
	os.Exit(code)
}
