//! Edge and OpenAI speech clients against loopback fakes speaking their real protocols.
