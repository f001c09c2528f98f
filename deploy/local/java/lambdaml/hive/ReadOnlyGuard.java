package lambdaml.hive;

import java.util.Set;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.expressions.CallMethodViaReflection;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.InsertIntoDir;
import org.apache.spark.sql.catalyst.plans.logical.InsertIntoStatement;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.ScriptTransformation;
import org.apache.spark.sql.execution.datasources.LogicalRelation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import scala.Function1;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark SQL extension ({@code spark.sql.extensions=lambdaml.hive.ReadOnlyGuard}) that makes the analysts'
 * Thrift Server read-only with a clear error.
 *
 * <p>It is the first of the server's locks, the one that names the refusal: an analysed statement is
 * refused before it runs when it writes or changes anything (any command but SHOW, DESCRIBE, EXPLAIN, USE,
 * SET, RESET and REFRESH TABLE; views too, temporary ones included), writes a directory (INSERT OVERWRITE
 * [LOCAL] DIRECTORY), runs a script (TRANSFORM), calls Java methods (reflect, java_method) or reads files
 * by path instead of through the catalog. The locks that cannot be bypassed from SQL are the server's
 * credentials: a metastore database user with SELECT only, and an S3 key that may only read.
 */
public class ReadOnlyGuard extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
  /** Commands that read the catalog or change only the session. */
  static final Set<String> READ_ONLY_COMMANDS = Set.of(
      "ExplainCommand", "SetCommand", "ResetCommand", "SetCatalogAndNamespace", "SetNamespaceCommand",
      "SetCatalogCommand", "RefreshTable", "RefreshTableCommand");

  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    Function1<LogicalPlan, BoxedUnit> rule = ReadOnlyGuard::check;
    extensions.injectCheckRule(session -> rule);
    return BoxedUnit.UNIT;
  }

  static BoxedUnit check(LogicalPlan plan) {
    plan.foreachWithSubqueries(node -> {
      inspect(node);
      return BoxedUnit.UNIT;
    });
    return BoxedUnit.UNIT;
  }

  static void inspect(LogicalPlan node) {
    String name = node.getClass().getSimpleName();
    if (node instanceof InsertIntoStatement || node instanceof InsertIntoDir) {
      refuse("writing data (" + name + ")");
    }
    if (node instanceof ScriptTransformation) {
      refuse("running a script (TRANSFORM)");
    }
    if (node instanceof Command && !readOnlyCommand(name)) {
      refuse("this statement (" + name + ")");
    }
    if (node instanceof LogicalRelation && ((LogicalRelation) node).catalogTable().isEmpty()) {
      refuse("reading files by path (query tables of the catalog instead)");
    }
    if (node instanceof DataSourceV2Relation && ((DataSourceV2Relation) node).catalog().isEmpty()) {
      refuse("reading files by path (query tables of the catalog instead)");
    }
    node.expressions().foreach(expression -> {
      inspect(expression);
      return BoxedUnit.UNIT;
    });
  }

  static void inspect(Expression expression) {
    expression.foreach(e -> {
      if (e instanceof CallMethodViaReflection) {
        refuse("calling Java methods (reflect, java_method)");
      }
      return BoxedUnit.UNIT;
    });
  }

  static boolean readOnlyCommand(String name) {
    return name.startsWith("Show") || name.startsWith("Describe") || READ_ONLY_COMMANDS.contains(name);
  }

  static void refuse(String what) {
    throw new SecurityException("Permission denied: analysts have read-only access to the Hive tier; "
        + what + " is refused by the lambdaml Thrift Server.");
  }
}
