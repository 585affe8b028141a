package org.edgevit.bench.core;

/** A job file that breaks the protocol; the job gets a failed result with this message. */
public class ProtocolException extends Exception {
    public ProtocolException(String message) {
        super(message);
    }
}
