// Every test file here uses the shared helpers.
@_exported import VLTestSupport
