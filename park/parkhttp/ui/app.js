// The live page: see the page branch.
