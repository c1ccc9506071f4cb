"""A fourth CDS service that exists only for the tests: adding a service is this module, its
knowledge file, one discovery entry (hooks.json here, given through the `hooks_file` setting) and
its tests, and nothing else in the project changes."""
