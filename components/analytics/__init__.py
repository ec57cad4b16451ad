"""com.amiedge.Analytics: anomaly inference in its own process (a crash stalls no reads)."""
