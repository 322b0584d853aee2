"""Stand-ins for services that cannot run here (Splunk HEC, Datadog intake, Elasticsearch, webhook
receivers): small real HTTP servers on loopback that follow the documented wire contracts strictly,
record what they accepted, and can inject faults."""
