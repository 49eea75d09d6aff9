"""Helpers shared by the test suites: the servers and processes they start, the api under
test, request factories. Fixtures live in the conftests; everything else lives here."""
