//! User-space bytes per idle connection, from the sizes of the structures
//! that hold one (see the crate docs, "Memory").

#[test]
fn an_idle_connection_costs_well_under_a_kibibyte() {
    let session = ringws::memory::session_bytes::<()>();
    let timer = ringws::memory::keepalive_timer_bytes();
    let total =
        ringws::memory::REACTOR_SLOT_BYTES + session + ringws::memory::LIVENESS_BYTES + timer;
    println!(
        "per idle connection: reactor slot {} + session {session} + liveness {} + \
         keepalive timer {timer} = {total} bytes",
        ringws::memory::REACTOR_SLOT_BYTES,
        ringws::memory::LIVENESS_BYTES,
    );
    assert!(total <= 1024, "{total} bytes per idle connection");
    // Application data is stored inline, so its size adds one for one.
    let with_data = ringws::memory::session_bytes::<[u64; 4]>();
    assert!(
        with_data >= session + 32 && with_data <= session + 40,
        "{with_data}"
    );
}
