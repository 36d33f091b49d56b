"""DeepDriveMD-style AI-coupled molecular dynamics workflow."""
