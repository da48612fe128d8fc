"""Azure AI Vision compatibility: the REST shapes, the service's rules and errors, and
`viewfinder serve`, the Image Analysis 4.0 compatible HTTP server.
"""
