//! A local Argos API simulator.
